"""Opens a rankdistill store for the notebooks: every Lance table of the store folder is
registered with a DataFusion session under its table name."""

import os
from pathlib import Path

import datafusion
import lance

DEFAULT_STORE = "../demo-store/pipeline-scifact"


def store_path() -> Path:
    """Return the store to read: RANKDISTILL_NOTEBOOK_STORE, or the one `make demo` writes."""
    path = Path(os.environ.get("RANKDISTILL_NOTEBOOK_STORE", DEFAULT_STORE))
    if not path.is_dir():
        raise FileNotFoundError(
            f"no store at {path.resolve()}: run `make demo` first, or set "
            "RANKDISTILL_NOTEBOOK_STORE to a pipeline store"
        )
    return path


def evaluation_stores(path: Path) -> dict[str, Path]:
    """Return the pipeline's out-of-domain stores, which sit beside the main one as
    <store>-<name>."""
    prefix = path.name + "-"
    return {
        other.name[len(prefix):]: other
        for other in sorted(path.parent.iterdir())
        if other.is_dir() and other.name.startswith(prefix)
    }


def open_store(path: Path) -> datafusion.SessionContext:
    """Return a DataFusion session with each `<table>.lance` dataset of the store registered."""
    ctx = datafusion.SessionContext()
    for dataset in sorted(path.glob("*.lance")):
        provider = lance.FFILanceTableProvider(lance.dataset(str(dataset)))
        ctx.register_table(dataset.name.removesuffix(".lance"), provider)
    return ctx
