"""The assessment log file, by path: the functions the file store has always offered.

The log's one reader and writer is the store (``icans_cli.store``: ``open_store()`` picks the
file or the ward's database); this module keeps the file's path-based functions under their old
names for the code and the tests that work on a file directly.
"""

from icans_cli.store import StoreError as LogError  # noqa: F401
from icans_cli.store.chain import (  # noqa: F401
    HASH_KEY, SCHEMA_VERSION, Head, Problem, Verified, encode_record, record_shape, utc_now,
)
from icans_cli.store.jsonl import (  # noqa: F401
    LOG_FILENAME, PRACTICE_FILENAME, WINDOWS, JsonlStore, append, data_dir, head, iter_lines,
    iter_records, permission_warnings, resolve_path, verify,
)
