from __future__ import annotations

from veil.manifest.tolerance import parse_tolerance


def test_seed_tolerance_string() -> None:
    t = parse_tolerance(
        "--only_for_testing-trust-any --only_for_testing-debug  "
        "--only_for_testing-ignore-signer -C -G -S")
    assert t.trust_any and t.debug and t.ignore_signer and t.testing_only
    assert t.tolerate == ("insecure-configuration", "outdated-tcb", "software-hardening-needed")
    assert t.unknown == ()


def test_combined_short_flags_and_unknown() -> None:
    t = parse_tolerance("-CS --software-hardening-needed --frobnicate")
    assert t.tolerate == ("insecure-configuration", "software-hardening-needed")
    assert t.unknown == ("--frobnicate",)
    assert not t.testing_only


def test_empty() -> None:
    assert parse_tolerance(None) == parse_tolerance("")
    assert not parse_tolerance(None).testing_only
