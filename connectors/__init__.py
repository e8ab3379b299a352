"""Connectors: personal data governed where it already lives (an external SQL database).

A mapping file (`lethe.connector/1`, YAML) says which tables of a source system hold personal
data, which column or join identifies the subject, which processing record and data category
each table holds, the columns that decide its due date, and how a row is erased there (delete,
or mask columns where a delete would break foreign keys). This package owns the mapping, the
source engines (secrets from a file or the environment, never in the mapping), keyset reading,
live reads for one subject and the erasure statements (with their dry-run SQL). Turning rows
into governed records is retention's (`retention/external.py`).
"""
