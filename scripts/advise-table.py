#!/usr/bin/env python3
"""The measured-descriptions table of docs/ADVISE.md, from `fiblab advise --json` files.

    for d in "--cpu 2ms --clients 4" ...; do fiblab advise $d --json N.json; done
    python3 scripts/advise-table.py 1.json 2.json ... > table.md

Prints, per advice: the description as flags, the model advised, the size of the
predicted tier 1, each measured model (req/s, measured tier) beside its prediction, how
many were within 30%, and whether the fastest measured is in the predicted tier 1; then
every row off its prediction with the reason the run computed; then the totals.
"""

import json
import sys


def thousands(x):
    return f"{round(x):,}"


def duration(us):
    if us >= 1e6:
        return f"{us / 1e6:g}s"
    if us >= 1e3:
        return f"{us / 1e3:g}ms"
    return f"{us:g}us"


def flags(s):
    out = []
    if s["mix"]:
        out.append("--mix " + ",".join(f"{n}:{w}" for n, w in s["mix"]))
    elif s["asked_cpu_us"] is not None:
        out.append("--cpu " + duration(s["asked_cpu_us"]))
    else:
        out.append(f"--n {s['n']}")
    if s["wait_us"] > 0:
        out.append("--wait " + duration(s["wait_us"]))
    if s.get("rate") is not None:
        out.append(f"--rate {round(s['rate'])}/s")
        if s["clients"] != 64:
            out.append(f"--clients {s['clients']}")
    else:
        out.append(f"--clients {s['clients']}")
    if s["slo_p99_us"] is not None:
        out.append("--slo p99=" + duration(s["slo_p99_us"]))
    if s.get("gil"):
        out.append("--gil")
    return " ".join(out)


def predicted(p):
    low, high = p
    if abs(high - low) / max(high, 1e-9) < 0.005:
        return thousands(high)
    return f"{thousands(low)}–{thousands(high)}"


def main(paths):
    rows, off, held, measured, confirmed = [], [], 0, 0, 0
    for path in paths:
        with open(path) as f:
            a = json.load(f)
        c = a.get("confirmation")
        if not c:
            continue
        desc = flags(a["service"])
        tier1 = [m["model"] for m in a["models"] if m["tier"] == 1]
        cells = "; ".join(
            f"`{r['model']}` {thousands(r['rps']['estimate'])} (t{r['tier'] or '-'}) / {predicted(r['predicted'])}"
            for r in c["rows"]
        )
        within = sum(1 for r in c["rows"] if r["within"])
        best = c["rows"][0]["model"] if c["rows"] else None
        best_in = best in tier1
        held += within
        measured += len(c["rows"])
        confirmed += best_in
        rows.append(
            f"| `{desc}` | `{a['advised']}` | {len(tier1)} models | {cells} | {within} of {len(c['rows'])} | {'yes' if best_in else 'no'} (`{best}`) |"
        )
        for r in c["rows"]:
            if not r["within"]:
                off.append(f"- `{desc}`, `{r['model']}` ({r['ratio']:.2f}x): {r['reason']}.")
    print(
        "| description (`fiblab advise ...`) | advised | predicted tier 1 | measured (req/s, tier) beside predicted | within 30% | fastest measured in predicted tier 1 |"
    )
    print("|---|---|---:|---|---:|---|")
    print("\n".join(rows))
    print()
    if off:
        print("Rows more than 30% off, with the reason each run computed:")
        print()
        print("\n".join(off))
        print()
    share = 100.0 * held / max(measured, 1)
    print(
        f"The fastest model measured is in the predicted tier 1 in {confirmed} of {len(rows)}; "
        f"{held} of {measured} measured rows ({share:.0f}%) are within 30% of their prediction."
    )


if __name__ == "__main__":
    main(sys.argv[1:])
