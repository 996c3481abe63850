#!/usr/bin/env python3
"""Benchmark: the cost of checking one piece of hardware evidence in CAS.

For the real AMD SEV-SNP and Intel TDX/SGX test vectors (tests/cas/data/attestation), the time
of parsing plus every signature and chain check the verifiers do, as median over N runs, next
to the baseline of one ECDSA P-384 verification (the least an SNP report check can cost),
measured in the same run, with the peak traced memory of each.

    python3 bench/bench_verifiers.py [-n 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "cas" / "data" / "attestation"


def measure(fn: Callable[[], object], n: int) -> tuple[float, float]:
    fn()  # warm caches (AMD and Intel roots are loaded and checked once per process)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e6)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return statistics.median(times), peak / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=300)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE.parent / "src"))
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from veil.cas.verifiers import quote, snp

    key = ec.generate_private_key(ec.SECP384R1())
    msg = b"x" * snp.SIGNED_END
    sig = key.sign(msg, ec.ECDSA(hashes.SHA384()))
    pub = key.public_key()

    snp_raw = (DATA / "snp" / "test-report.bin").read_bytes()
    vcek_der = (DATA / "snp" / "test-vcek.der").read_bytes()

    def snp_check() -> None:
        report = snp.parse_report(snp_raw)
        cert = snp.load_cert(vcek_der)
        product, kind = snp.verify_chain(cert)
        snp.check_cert_matches(report, cert, product, kind)
        snp.verify_signature(report, cert)

    def quote_check(name: str) -> Callable[[], None]:
        raw = (DATA / name).read_bytes()
        return lambda: quote.verify_quote(quote.parse_quote(raw))

    cases: list[tuple[str, Callable[[], object]]] = [
        (
            "baseline: one ECDSA P-384 verify",
            lambda: pub.verify(sig, msg, ec.ECDSA(hashes.SHA384())),
        ),
        ("sev-snp report + VCEK chain", snp_check),
        ("tdx quote v4 + PCK chain", quote_check("tdx/tdx_quote_4.dat")),
        ("tdx quote v5 + PCK chain", quote_check("tdx/tdx_quote_5.dat")),
        ("sgx-dcap quote v3 + PCK chain", quote_check("sgx/occlum_quote.dat")),
    ]
    rows = [(name, *measure(fn, args.n)) for name, fn in cases]
    base = rows[0][1]
    print(f"evidence checks, median of {args.n} runs each")
    print(f"{'check':<34} {'median us':>10} {'x baseline':>10} {'peak KiB':>9}")
    for name, med, peak in rows:
        print(f"{name:<34} {med:>10.0f} {med / base:>10.1f} {peak:>9.0f}")


if __name__ == "__main__":
    main()
