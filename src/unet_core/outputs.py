"""Output names: one distinct ``<stem>`` per input, so no result overwrites another."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path


def resolved(path: Path) -> Path:
    """``path`` made absolute, its links followed where they lead somewhere (a link
    that loops is named as given; reading it reports the loop)."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):      # RuntimeError: a symlink loop, Python < 3.13
        return path.absolute()


def _candidates(path: Path):
    """Ever longer names for ``path``: stem, stem + suffix, then parent folders in front."""
    yield path.stem
    tail = path.name.replace(".", "_") if path.suffix else path.name
    yield tail
    for parent in resolved(path).parents:
        if not parent.name:
            break
        tail = f"{parent.name}_{tail}"
        yield tail


def output_stems(paths) -> tuple[dict[Path, str], list[str]]:
    """A distinct output stem for every input file.

    Inputs keep their own stem (``img.tif`` -> ``img``) unless another input has the
    same one; those get their suffix (``img_png``) and then as many parent folder
    names as it takes (``day1_img_tif``, ``day2_img_tif``).  A file given twice is
    segmented once.

    Parameters
    ----------
    paths : iterable of str or Path

    Returns
    -------
    stems : dict Path -> str
        In the order given.
    notes : list of str
        One line per renamed or repeated input, for the user.
    """
    unique, notes, seen = [], [], {}
    for p in map(Path, paths):
        key = resolved(p)
        if key in seen:
            notes.append(f"{p} is the same file as {seen[key]}: segmented once")
            continue
        seen[key] = p
        unique.append(p)
    gens = {p: _candidates(p) for p in unique}
    stems = {p: next(gens[p]) for p in unique}
    while True:
        groups = defaultdict(list)
        for p, stem in stems.items():
            groups[stem.lower()].append(p)    # case-insensitive file systems collide too
        clashes = [ps for ps in groups.values() if len(ps) > 1]
        if not clashes:
            break
        for ps in clashes:
            for p in ps:
                stems[p] = next(gens[p], None) or f"{stems[p]}_{unique.index(p) + 1}"
    for p in unique:
        if stems[p] != p.stem:
            notes.append(f"{p} shares its name with another input: its results are named "
                         f"{stems[p]}_*")
    return stems, notes
