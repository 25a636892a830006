"""The analysis's own code, standard library only: FASTA checking and the HTML report.

Used by the pipeline's Python steps (app.py) and, as a command line, by the Snakefile variant:

    python analysis.py check OUT.fa IN.fa [IN.fa ...]
    python analysis.py report HITS.tsv QUERIES.fa PRESET OUT.html
"""

from __future__ import annotations

import html
import json
import sys
from pathlib import Path

NUCLEOTIDES = set("ACGTUNRYKMSWBDHV-")
# blastn options per configuration choice (the form's "preset")
PRESETS = {
    "fast": ["-task", "megablast", "-evalue", "1e-10"],
    "sensitive": ["-task", "blastn", "-word_size", "11", "-evalue", "10"],
}
HIT_COLUMNS = ["query", "subject", "identity", "length", "evalue", "bitscore"]
OUTFMT = "6 qseqid sseqid pident length evalue bitscore"


class BadFasta(ValueError):
    """The input is not nucleotide FASTA; the message says where."""


def check_fasta(sources: list[Path], target: Path) -> int:
    """Validate FASTA files and write them, cleaned (upper case, one line per sequence), into
    `target`; returns the number of records."""
    records: list[tuple[str, str]] = []
    for source in sources:
        header: str | None = None
        chunks: list[str] = []
        try:
            lines = source.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise BadFasta(f"{source.name}: not a text file") from None
        for number, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line:
                continue
            if line.startswith(">"):
                if header is not None:
                    records.append(_record(source, header, chunks))
                header, chunks = line[1:].strip() or f"seq{len(records) + 1}", []
            elif header is None:
                raise BadFasta(f"{source.name} line {number}: sequence data before the first '>' header")
            else:
                bad = set(line.upper()) - NUCLEOTIDES
                if bad:
                    raise BadFasta(
                        f"{source.name} line {number}: unexpected character {sorted(bad)[0]!r} "
                        "(nucleotide FASTA expected)"
                    )
                chunks.append(line.upper())
        if header is not None:
            records.append(_record(source, header, chunks))
    if not records:
        raise BadFasta(", ".join(s.name for s in sources) + ": no FASTA records")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(f">{name}\n{sequence}\n" for name, sequence in records))
    return len(records)


def _record(source: Path, header: str, chunks: list[str]) -> tuple[str, str]:
    if not chunks:
        raise BadFasta(f"{source.name}: record {header!r} has no sequence")
    return header, "".join(chunks)


def read_hits(hits: Path) -> list[dict[str, object]]:
    rows = []
    for line in hits.read_text().splitlines():
        if not line.strip():
            continue
        q, s, ident, length, evalue, bits = line.split("\t")
        rows.append(
            {
                "query": q,
                "subject": s,
                "identity": float(ident),
                "length": int(length),
                "evalue": float(evalue),
                "bitscore": float(bits),
            }
        )
    return rows


def summarise(hits: Path, queries: Path, preset: str) -> dict[str, object]:
    """The best hit of every query (None where nothing matched)."""
    names = [line[1:].split()[0] for line in queries.read_text().splitlines() if line.startswith(">")]
    best: dict[str, dict[str, object]] = {}
    for row in read_hits(hits):
        current = best.get(str(row["query"]))
        if current is None or float(str(row["bitscore"])) > float(str(current["bitscore"])):
            best[str(row["query"])] = row
    return {
        "preset": preset,
        "queries": len(names),
        "best_hits": [
            {"query": n, **({k: v for k, v in best[n].items() if k != "query"} if n in best else {"subject": None})}
            for n in names
        ],
    }


def render_report(summary: dict[str, object]) -> str:
    rows = []
    for hit in summary["best_hits"]:  # type: ignore[attr-defined]
        if hit["subject"] is None:
            rows.append(f"<tr><td>{html.escape(hit['query'])}</td><td colspan=4><em>no hit</em></td></tr>")
        else:
            rows.append(
                "<tr>"
                + "".join(
                    f"<td>{html.escape(str(hit[c]))}</td>" for c in ("query", "subject", "identity", "length", "evalue")
                )
                + "</tr>"
            )
    return (
        "<!doctype html><meta charset=utf-8><title>BLAST report</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;border-bottom:1px solid #ddd}</style>"
        f"<h1>BLAST report</h1><p>{summary['queries']} queries, preset <b>{html.escape(str(summary['preset']))}"
        "</b></p><table><tr><th>query</th><th>best subject</th><th>identity %</th><th>length</th>"
        f"<th>e-value</th></tr>{''.join(rows)}</table>"
    )


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["check"] and len(argv) >= 3:
            count = check_fasta([Path(p) for p in argv[2:]], Path(argv[1]))
            print(f"{argv[1]}: {count} records")
            return 0
        if argv[:1] == ["report"] and len(argv) == 5:
            summary = summarise(Path(argv[1]), Path(argv[2]), argv[3])
            Path(argv[4]).write_text(render_report(summary))
            Path(argv[4]).with_suffix(".json").write_text(json.dumps(summary))
            return 0
    except BadFasta as exc:
        print(f"invalid input: {exc}", file=sys.stderr)
        return 2
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
