"""Synthesizing question/SQL pairs from a database (``service=synthesize``, issue 16).

:mod:`querycraft.synthesis.profile` reads the database (tables, typed columns, keys, real
values); :mod:`querycraft.synthesis.rules` writes SQL over a declared spread of features (one module
per feature) and a question for each from built-in templates. The service
(:mod:`querycraft.services.synthesize`) runs each query read-only, keeps the non-degenerate
ones, deduplicates them and writes the CSV and the report.
"""

from querycraft.synthesis.profile import DatabaseProfile, read_profile
from querycraft.synthesis.rules import DEFAULT_WEIGHTS, FEATURES, RULES
from querycraft.synthesis.rules.common import Candidate, Generator, name_the_rows

__all__ = ["DEFAULT_WEIGHTS", "FEATURES", "RULES", "Candidate", "DatabaseProfile", "Generator",
           "name_the_rows", "read_profile"]
