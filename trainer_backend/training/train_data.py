"""The datasets a trainer gets, from prepared data: packed where packing applies, and ready to train as they are.

Prepared rows are already tokenised, masked and cut to the length limits, so SFT needs nothing more from TRL's own
preparation (a truncation and a fully-masked filter over every row, which cost as much as tokenising): the trainer
is told to skip it. Where packing applies, the rows are packed here with TRL's own `pack_dataset` (the same
function and arguments TRL's preparation would use), and the packed set is kept with the prepared-data cache entry,
so a resumed job or a re-run packs nothing. DPO, ORPO and reward models tokenise in their TRL trainers as before.
"""
from __future__ import annotations

from typing import Any, Optional

from ..data import PreparedData
from ..spec import JobSpec
from ..trainer_registry import trainer_info
from .model_loading import resolve_packing


def packing_strategy(spec: JobSpec) -> Optional[str]:
    """How the trainer packs rows (None: no packing): generic concatenates and cuts, sft packs whole samples."""
    info = trainer_info(spec.training.trainer)
    if info.pairs or not resolve_packing(spec):  # pairs are never packed (chosen/rejected stay whole)
        return None
    return "wrapped" if info.documents else "bfd"


def trainer_datasets(prepared: PreparedData, spec: JobSpec) -> tuple[Any, Optional[Any], bool]:
    """(train, eval, ready): ready means the trainer must use them as they are (no preparation of its own)."""
    train, valid = prepared.to_datasets()
    if "input_ids" not in train.column_names:  # preference rows: the trainer tokenises them
        return train, valid, False
    strategy = packing_strategy(spec)
    if strategy is None:
        # sft rows are cut to block_size already; generic rows are whole documents that only packing cuts
        return train, valid, not trainer_info(spec.training.trainer).documents
    block = spec.lengths.block_size
    return (_packed(prepared, "train", train, strategy, block),
            _packed(prepared, "valid", valid, strategy, block) if valid is not None else None, True)


def _packed(prepared: PreparedData, split: str, rows: Any, strategy: str, block: int) -> Any:
    from trl.data_utils import pack_dataset

    def build(path: Any) -> Any:
        # what SFTTrainer._prepare_dataset does when packing (without shuffle_dataset, which we never set)
        return pack_dataset(rows.select_columns(["input_ids", "labels"]), block, strategy,
                            {"cache_file_name": str(path), "load_from_cache_file": False,
                             "desc": f"Packing {split} rows"})
    return prepared.derived(f"{split}-packed-{strategy}-{block}.arrow", build)
