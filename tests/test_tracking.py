"""tracking=[tensorboard]: each fold's epochs and the config as TensorBoard events and hparams, read back with
tensorboard's own reader; a missing package costs a warning, never the run."""
from __future__ import annotations

import builtins
import logging

import pandas as pd
import pytest

from conftest import tiny_cfg, write_folder_data
from kit.data import folds
from kit.tracking import tensorboard
from kit.train import loop


def test_every_epoch_of_every_fold_reads_back_from_the_event_files(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
    data = write_folder_data(tmp_path / "data", n_per_class=8, n_test=3)
    cfg = tiny_cfg(tmp_path, data, stage1_epochs=2, stage2_epochs=1, tracking=["tensorboard"])
    folds.make_folds(cfg)
    loop.run([cfg])
    for k in range(cfg.n_folds):
        fold = tmp_path / "folds" / "tiny" / f"fold{k}"
        events = EventAccumulator(str(fold / "tensorboard"))
        events.Reload()
        history = pd.read_csv(fold / "history.csv")
        loss = [e.value for e in events.Scalars("val_loss")]
        assert [e.step for e in events.Scalars("val_loss")] == list(history["epoch"]), "one point per epoch"
        assert loss == pytest.approx(list(history["val_loss"]), rel=1e-6), "history.csv's numbers"
        assert any(t.startswith("config") for t in events.Tags()["tensors"]), events.Tags()
        plugin = {tag: HParamsPluginData.FromString(content) for tag, content in events.PluginTagToContent("hparams").items()}
        start = next(p.session_start_info for p in plugin.values() if p.HasField("session_start_info"))
        assert start.hparams["stage1_lr"].number_value == pytest.approx(cfg.stage1_lr), "the config as hparams"
        assert start.hparams["backbone"].string_value == cfg.backbone
        assert any(p.HasField("session_end_info") for p in plugin.values()), "the fold's end, in the HPARAMS tab"


def test_without_the_package_the_run_goes_on_with_one_warning(tmp_path, monkeypatch, caplog):
    real = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    monkeypatch.setattr(tensorboard, "_WRITERS", {})
    monkeypatch.setattr(tensorboard, "_WARNED", set())
    data = write_folder_data(tmp_path / "data", n_per_class=8, n_test=3)
    cfg = tiny_cfg(tmp_path, data, stage1_epochs=1, stage2_epochs=0, tracking=["tensorboard"])
    folds.make_folds(cfg)
    with caplog.at_level(logging.WARNING):
        loop.run([cfg])
    said = [r.getMessage() for r in caplog.records if "pip install tensorboard" in r.getMessage()]
    assert len(said) == 1, said
    assert (tmp_path / "folds" / "tiny" / "fold1" / "best.pt").is_file(), "every fold trained"
    assert not (tmp_path / "folds" / "tiny" / "fold0" / "tensorboard").exists()
