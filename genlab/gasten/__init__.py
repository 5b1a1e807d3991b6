"""GASTeN (seed 000): a GAN whose samples look real yet sit on a binary classifier's decision boundary.

Step 1 trains an ordinary GAN on a class pair, keeping a checkpoint per epoch and its FID. Step 2 starts
from a chosen step-1 epoch and adds `α · L_amb(C(G(z)))` to the generator loss; the report compares the
two on the same noise (FID, ACD, FOCD, hubris, output histograms, the most ambiguous images).
"""

from genlab.gasten.pipeline import (
    Step2Result,
    compare_generators,
    run_step1,
    run_step2,
    step1_checkpoint,
    step1_config,
    step2_config,
)

__all__ = ["Step2Result", "compare_generators", "run_step1", "run_step2", "step1_checkpoint", "step1_config",
           "step2_config"]
