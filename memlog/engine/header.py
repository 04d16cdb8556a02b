"""What a store's header fixes: the MEMIT configuration, the base model's fingerprint, and the
covariances logged with it. Used when a store is opened and when a memory is attached."""

from __future__ import annotations

import torch

from memlog.core.memit_hparams import MemitConfig
from memlog.errors import ModelMismatchError
from memlog.store.events import CovarianceComputed, StoreCreated
from memlog.store.store import Store


def covariances_from_log(store: Store, logged) -> dict[int, torch.Tensor]:
    covs: dict[int, torch.Tensor] = {}
    for item in logged:
        if isinstance(item.event, CovarianceComputed):
            covs[item.event.layer] = torch.from_numpy(store.blobs.get(item.event.cov).copy())
    return covs


def check_fingerprint(header: StoreCreated, actual: str, model_desc: str) -> None:
    if header.fingerprint != actual:
        raise ModelMismatchError(
            f"the store was created for model {header.model_id!r} (fingerprint {header.fingerprint[:25]}…), "
            f"but {model_desc} has fingerprint {actual[:25]}…; open it with the model it was made for"
        )


def memit_config_of(header: StoreCreated) -> MemitConfig:
    data = dict(header.config.get("memit", {}))
    data["layers"] = tuple(header.layers)
    known = set(MemitConfig.__dataclass_fields__)
    return MemitConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known})
