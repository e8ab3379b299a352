"""The append-only Merkle audit log, signed checkpoints, proofs and the verifier.

Importing the package registers its tables (for Alembic and the models-versus-migrations test).
"""

from audit_log import models as models
