import numpy as np
import pytest
from data_helpers import ARM, CART, make_episode

from hma_zoo.data.commands import main
from hma_zoo.data.shards import DatasetWriter


def _dataset(root):
    with DatasetWriter(root, [ARM, CART], image_size=(8, 8)) as w:
        w.add(make_episode("a0", ARM, 5))
        w.add(make_episode("c0", CART, 5))
    return root


def test_stats_and_validate(tmp_path, capsys):
    root = _dataset(tmp_path / "d")
    assert main(["stats", str(root)]) == 0
    out = capsys.readouterr().out
    assert "arm" in out and "cart" in out
    assert main(["validate", str(root)]) == 0
    assert "2 episodes read" in capsys.readouterr().out


def test_validate_reports_damage(tmp_path, capsys):
    root = _dataset(tmp_path / "d")
    shard = next((root / "train").glob("arm-*.tar"))
    data = bytearray(shard.read_bytes())
    i = data.find(b"\x93NUMPY", 1024)
    data[i + 130] ^= 0xFF  # first data bytes after the 128-byte npy header
    shard.write_bytes(bytes(data))
    assert main(["validate", str(root)]) == 1
    assert "CRC32" in capsys.readouterr().err
    assert main(["validate", str(root), "--skip-damaged"]) == 1
    assert "1 damaged episodes" in capsys.readouterr().out


def test_build_list(capsys):
    assert main(["build", "--out", "unused", "--list"]) == 0
    assert "sim-mix-mini" in capsys.readouterr().out


def test_import_files_command(tmp_path):
    (tmp_path / "src").mkdir()
    np.savez(tmp_path / "src" / "e.npz", frames=np.zeros((4, 8, 8, 3), np.uint8), actions=np.ones((4, 2), np.float32))
    assert main(["import-files", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "o"), "--embodiment", "r",
                 "--control-hz", "5", "--image-size", "8"]) == 0
    assert (tmp_path / "o" / "manifest.json").exists()


def test_subset_shares_the_shards_of_some_embodiments(tmp_path, capsys):
    from hma_zoo.data.datamodule import HMADataModule
    from hma_zoo.data.shards import load_manifest

    root = _dataset(tmp_path / "d")
    assert main(["subset", "--data", str(root), "--embodiments", "cart", "--out", str(tmp_path / "sub")]) == 0
    m = load_manifest(tmp_path / "sub")
    assert list(m["embodiments"]) == ["cart"] and all(s["embodiment"] == "cart" for s in m["shards"])
    assert not list((tmp_path / "sub").glob("*/*.tar"))  # nothing copied
    assert main(["validate", str(tmp_path / "sub")]) == 0 and "1 episodes read" in capsys.readouterr().out
    dm = HMADataModule(str(tmp_path / "sub"), window=2, batch_size=1, num_workers=0)
    assert [e.name for e in dm.embodiments] == ["cart"]
    with pytest.raises(KeyError, match="no embodiment"):
        main(["subset", "--data", str(root), "--embodiments", "hand", "--out", str(tmp_path / "x")])


def test_stats_table_prints_significant_digits_for_small_actions():
    """Actions in metres (std ~1e-3) used to print as +0.00/0.00."""
    from hma_zoo.data.commands import _stats_table

    emb = {"action_dim": 3, "stride": 1, "control_hz": 10.0, "frame_hz": 10.0,
           "counts": {"train": {"episodes": 2, "frames": 10}, "val": {"episodes": 0, "frames": 0}},
           "action_stats": {"mean": [0.001234, -0.0000456, 512.0], "std": [0.000789, 0.0123, 3.0]}}
    table = _stats_table({"embodiments": {"arm": emb}})
    assert "+0.00123/0.000789" in table and "-4.56e-05/0.0123" in table and "+512/3" in table
    assert "0.00/0.00" not in table
