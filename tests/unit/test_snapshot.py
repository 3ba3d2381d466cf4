"""The snapshot predicate: accounting per device, the PCI cross-check and the totals."""

from __future__ import annotations

from fractions import Fraction

import pytest
from gpucensus.agent.backends.mock import MockBackend
from gpucensus.agent.host import NodeInfo, node_info, validate_node_id
from gpucensus.agent.snapshot import build_predicate
from gpucensus.common.accounting import load_rules
from gpucensus.common.catalogue import load_catalogue
from gpucensus.common.devices import Discovery, DriverInfo, GpuDevice, PciFunction
from gpucensus.common.errors import ConfigError
from gpucensus.common.inventory import decimal_text

NODE = NodeInfo(id="node-a", hostname="gpu01", site="fra-1", boot_id="boot")


def predicate_for(profile: str) -> dict:
    backend = MockBackend(profile)
    return build_predicate(NODE, "mock", backend.discover(), backend.pci_functions(), load_catalogue(), load_rules())


def test_dgx_h100_totals() -> None:
    totals = predicate_for("dgx-h100")["totals"]
    # 8 x 15,832 = 126,656 TPP = 8 x 1000 milli-H100e, all 3A090.a
    assert totals == {
        "gpus": 8,
        "tpp": 126656,
        "h100e_milli": 8000,
        "unaccounted": 0,
        "not_in_nvml": 0,
        "by_eccn": {"3A090.a": {"gpus": 8, "tpp": 126656}},
    }


def test_mixed_node_totals_by_class() -> None:
    totals = predicate_for("mixed")["totals"]
    # 2 x 15,832 (H100) + 2 x 5,864 (L40S) + 2 x 1,940 (L4, .a by density) = 47,272
    assert totals["tpp"] == 47272
    assert totals["by_eccn"] == {"3A090.a": {"gpus": 6, "tpp": 47272}}


def test_h20_node_is_outside_3a090() -> None:
    totals = predicate_for("h20-8x")["totals"]
    assert totals["by_eccn"] == {"not-3A090": {"gpus": 8, "tpp": 8 * 2368}}


def test_lost_gpu_still_counts() -> None:
    predicate = predicate_for("one-lost-of-8")
    lost = predicate["devices"][5]
    assert (lost["status"], lost["error"], lost["tpp"]) == ("lost", "GPU is lost", 15832)
    assert "sm_count" not in lost and "sm_count" in lost["not_reported"]
    assert predicate["totals"]["tpp"] == 126656


def test_hidden_gpu_is_flagged_and_counted() -> None:
    predicate = predicate_for("hidden-gpu")
    flagged = [p for p in predicate["pci_functions"] if p["status"] == "not-in-nvml"]
    assert len(flagged) == 1 and flagged[0]["model"] == "h100-sxm5" and flagged[0]["tpp"] == 15832
    assert all("nvml_index" in p for p in predicate["pci_functions"] if p["status"] == "matched")
    assert predicate["totals"]["gpus"] == 8 and predicate["totals"]["not_in_nvml"] == 1
    assert predicate["totals"]["tpp"] == 126656


def test_unknown_device_derived_and_flagged() -> None:
    device = predicate_for("unknown-device")["devices"][0]
    assert (device["basis"], device["tpp"], device["eccn"], device["model"]) == ("derived", 17215, "3A090.a", "")
    assert device["review"]
    assert "die_area_mm2" not in device and "pd_milli" not in device


def test_unidentifiable_device_is_incomplete_and_unaccounted() -> None:
    discovery = Discovery(DriverInfo("1", "2", "lib"), [GpuDevice(index=0, uuid="GPU-x", pci_device_id="0x0009")])
    predicate = build_predicate(NODE, "mock", discovery, [], load_catalogue(), load_rules())
    device = predicate["devices"][0]
    assert device["status"] == "incomplete" and device["basis"] == "unknown" and "tpp" not in device
    assert predicate["totals"]["unaccounted"] == 1 and predicate["totals"]["gpus"] == 1


def test_pci_function_matches_across_domain_widths() -> None:
    discovery = Discovery(
        DriverInfo("1", "2", "lib"), [GpuDevice(index=0, pci_bus_id="00000000:18:00.0", pci_device_id="0x2330")]
    )
    pci = [PciFunction("0000:18:00.0", "0x2330", "0x0302")]
    predicate = build_predicate(NODE, "nvml", discovery, pci, load_catalogue(), load_rules())
    assert predicate["pci_functions"][0]["status"] == "matched"
    assert predicate["pci_functions"][0]["nvml_index"] == 0


def test_node_and_driver_sections() -> None:
    predicate = predicate_for("dgx-h100")
    assert predicate["node"]["id"] == "node-a" and predicate["node"]["site"] == "fra-1"
    assert predicate["driver"]["backend"] == "mock" and predicate["driver"]["version"] == "550.54.15"


def test_die_area_decimal_text() -> None:
    assert decimal_text(Fraction(814)) == "814"
    assert decimal_text(Fraction("608.5")) == "608.5"
    assert decimal_text(None) == ""


# the collector's rule (also a certificate CN's): 1-64 of [A-Za-z0-9._-], starting with a letter or digit
@pytest.mark.parametrize("bad", ["", "-starts-with-dash", "has space", "n1\n", "x" * 65, "node:1", "ü"])
def test_invalid_node_ids_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError, match="node id"):
        validate_node_id(bad)


def test_longest_node_id_is_accepted() -> None:
    assert validate_node_id("a" * 64) == "a" * 64


def test_node_id_falls_back_to_the_machine_id_and_says_how_to_set_it(tmp_path) -> None:
    (tmp_path / "machine-id").write_text("0123abcd\n")
    assert node_info(machine_id_paths=[str(tmp_path / "machine-id")]).id == "0123abcd"
    with pytest.raises(ConfigError) as err:
        node_info(machine_id_paths=[str(tmp_path / "absent")])
    assert "--node-id" in err.value.hint and "[node] id" in err.value.hint
