"""Peer for the import benchmark: stream a BEIR corpus.jsonl into a Lance dataset with pylance.

This is the usual Python route: pyarrow's streaming JSON reader feeding lance.write_dataset.
It does no validation, so it does less work than `rankdistill import passages`.
"""

import sys

import lance
import pyarrow as pa
import pyarrow.json as pj


def main() -> None:
    corpus, uri = sys.argv[1], sys.argv[2]
    schema = pa.schema([("_id", pa.string()), ("title", pa.string()), ("text", pa.string())])
    reader = pj.open_json(
        corpus,
        read_options=pj.ReadOptions(block_size=8 << 20),
        parse_options=pj.ParseOptions(explicit_schema=schema),
    )
    renamed = pa.schema([("doc_id", pa.string()), ("title", pa.string()), ("text", pa.string())])
    batches = (pa.RecordBatch.from_arrays(batch.columns, schema=renamed) for batch in reader)
    lance.write_dataset(pa.RecordBatchReader.from_batches(renamed, batches), uri, mode="overwrite")
    print(lance.dataset(uri).count_rows())


if __name__ == "__main__":
    main()
