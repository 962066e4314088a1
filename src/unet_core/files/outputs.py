"""Output names: one distinct ``<stem>`` per input, so no result overwrites another,
and the files each run writes for it (``<stem>_labels.tif``, ...)."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

#: What a run can write per input.
OUTPUTS = ("labels", "prob", "csv")
SUFFIXES = {"labels": "_labels.tif", "prob": "_prob.tif", "csv": "_objects.csv"}
ZARR_SUFFIXES = {"labels": "_labels.zarr", "prob": "_prob.zarr", "csv": "_objects.csv"}
#: The endings of every output name (a folder run skips inputs that end so).
OUTPUT_ENDINGS = tuple(SUFFIXES.values()) + tuple(ZARR_SUFFIXES.values())
_MULTI_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr")


def output_paths(stem: str, output_dir, outputs=("labels", "csv"), as_zarr: bool = False) -> dict[str, Path]:
    """Where the ``outputs`` of input ``<stem>.*`` go: {"labels": .../<stem>_labels.tif, ...}
    (``.zarr`` stores instead of TIFF with ``as_zarr``)."""
    suffixes = ZARR_SUFFIXES if as_zarr else SUFFIXES
    return {k: Path(output_dir) / f"{stem}{suffixes[k]}" for k in outputs}


def resolved(path: Path) -> Path:
    """``path`` made absolute, its links followed where they lead somewhere (a link
    that loops is named as given; reading it reports the loop)."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):      # RuntimeError: a symlink loop, Python < 3.13
        return path.absolute()


def _candidates(path: Path, root: Path | None = None):
    """Ever longer names for ``path``: stem, stem + suffix, then parent folders in front.

    With ``root``, the stem is the path inside ``root`` without its extension (OME's
    ``.ome.tif`` included), and the suffix is added in lower case."""
    if root is None:
        yield path.stem
        tail = path.name.replace(".", "_") if path.suffix else path.name
    else:
        name = str(path.relative_to(root))
        for ext in _MULTI_SUFFIXES + (path.suffix,):
            if ext and name.lower().endswith(ext):
                name = name[: -len(ext)]
                break
        yield name
        tail = f"{name}_{path.suffix.lstrip('.').lower()}"
    yield tail
    for parent in resolved(path).parents:
        if not parent.name:
            break
        tail = f"{parent.name}_{tail}"
        yield tail


def output_stems(paths, root=None) -> tuple[dict[Path, str], list[str]]:
    """A distinct output stem for every input file.

    Inputs keep their own stem (``img.tif`` -> ``img``) unless another input has the
    same one; those get their suffix (``img_png``) and then as many parent folder
    names as it takes (``day1_img_tif``, ``day2_img_tif``).  A file given twice is
    segmented once.

    Parameters
    ----------
    paths : iterable of str or Path
    root : path, optional
        The folder the inputs were found in: stems are their paths inside it
        (``sub/img``), without the extension (``img.ome.tif`` -> ``img``).

    Returns
    -------
    stems : dict Path -> str
        In the order given.
    notes : list of str
        One line per renamed or repeated input, for the user.
    """
    root = None if root is None else Path(root)
    unique, notes, seen = [], [], {}
    for p in map(Path, paths):
        key = resolved(p)
        if key in seen:
            notes.append(f"{p} is the same file as {seen[key]}: segmented once")
            continue
        seen[key] = p
        unique.append(p)
    gens = {p: _candidates(p, root) for p in unique}
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
        if stems[p] != next(_candidates(p, root)):
            notes.append(f"{p} shares its name with another input: its results are named "
                         f"{stems[p]}_*")
    return stems, notes
