"""The dbt project (staging, intermediate, marts, quality) and a small runner around the dbt CLI.

`python -m dbt_project build` runs dbt with the connection settings of common.settings (PG_* from the
environment and the repo's .env) put into the environment profiles.yml reads with env_var().
"""

from dbt_project.runner import PROJECT_DIR, DbtResult, dbt_env, run_dbt
from dbt_project.settings import TransformSettings

__all__ = ["PROJECT_DIR", "DbtResult", "TransformSettings", "dbt_env", "run_dbt"]
