"""Facility model: presets, validation errors that name the field, topology arrays."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gigafactory.core.facility import PRESETS, Facility, FacilitySpec, preset


@pytest.mark.parametrize(
    ("name", "nodes", "gpus", "blocks"),
    [("gigafactory-100k", 12_500, 100_000, 98), ("ai-factory-25k", 3_125, 25_000, 25), ("dev-32", 4, 32, 1)],
)
def test_presets_have_documented_sizes(name: str, nodes: int, gpus: int, blocks: int) -> None:
    f = preset(name)
    assert (f.n_nodes, f.total_gpus, f.n_blocks) == (nodes, gpus, blocks)
    # Blocks are contiguous node ranges that tile the facility.
    assert f.block_start[0] == 0 and f.block_end[-1] == f.n_nodes
    assert (f.block_end[:-1] == f.block_start[1:]).all()


def test_100k_blocks_hold_1024_gpus_except_the_last() -> None:
    f = preset("gigafactory-100k")
    sizes = (f.block_end - f.block_start) * 8
    assert set(sizes[:-1].tolist()) == {1024}
    assert sizes[-1] == 100_000 - 97 * 1024


def test_unknown_preset_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown facility preset 'nope'; expected one of gigafactory-100k"):
        preset("nope")


def _spec(**pool: object) -> dict[str, object]:
    data = {k: v for k, v in PRESETS["dev-32"].items()}
    data["sites"] = [{"name": "a", "pools": [{"accelerator": "H100", "nodes": 4, **pool}]}]
    return data


def test_unknown_accelerator_names_the_field() -> None:
    data = _spec()
    data["sites"] = [{"name": "a", "pools": [{"accelerator": "TPU", "nodes": 2}]}]
    with pytest.raises(ValidationError, match=r"sites\[0\]\.pools\[0\]\.accelerator: unknown accelerator 'TPU'"):
        FacilitySpec.model_validate(data)


def test_levels_must_nest() -> None:
    with pytest.raises(ValidationError, match=r"nodes_per_block \(6\) must be a multiple of nodes_per_rack \(4\)"):
        FacilitySpec.model_validate(_spec(nodes_per_rack=4, nodes_per_block=6))


def test_negative_or_missing_fields_are_rejected_by_path() -> None:
    with pytest.raises(ValidationError) as exc:
        FacilitySpec.model_validate(_spec(nodes=-1))
    assert exc.value.errors()[0]["loc"] == ("sites", 0, "pools", 0, "nodes")
    with pytest.raises(ValidationError, match="extra"):
        FacilitySpec.model_validate(_spec(gpus=8))


def test_topology_arrays_follow_the_spec() -> None:
    f = Facility.from_spec(FacilitySpec.model_validate(_spec(nodes=8, nodes_per_rack=2, nodes_per_block=4)))
    assert f.node_rack.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert f.node_block.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert f.max_gang() == 64
    assert f.max_gang(f.accel_id("H100")) == 64
    with pytest.raises(ValueError, match="unknown accelerator 'X'"):
        f.accel_id("X")
