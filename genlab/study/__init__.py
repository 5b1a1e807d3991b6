"""Studies: sequences of runs, one change each, with tables per phase and a comparison of finalists (seed 003).

`spec` reads and checks the study file; `runner` plans every run before training any, trains, skips or
resumes each in order, and writes study.json, tables.md, the comparison and the report.
"""

from genlab.study.runner import PlannedRun, StudyOutcome, plan_study, run_study, study_root, study_tables
from genlab.study.spec import CompareSpec, Study, Variant, list_studies, load_study, resolve_study

__all__ = ["CompareSpec", "PlannedRun", "Study", "StudyOutcome", "Variant", "list_studies", "load_study",
           "plan_study", "resolve_study", "run_study", "study_root", "study_tables"]
