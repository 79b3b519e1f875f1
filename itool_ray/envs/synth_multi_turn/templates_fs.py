"""Templates of ``GorillaFileSystem`` (registered at import, in this order)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bfcl.eval_checker.multi_turn_eval.func_source_code.gorilla_file_system import Directory, File

from itool_ray.envs.bfcl_exec import World
from itool_ray.envs.synth_multi_turn.templating import (
    _Ctx,
    _Draft,
    _pick_file,
    _Place,
    _places,
    _template,
    _two_files,
    _visible,
)
from itool_ray.envs.synth_multi_turn.vocabulary import (
    _DIRS,
    _EXTS,
    _FS,
    _STEMS,
    _c,
    _count,
    _line,
    _one,
)


def _new_name(ctx: _Ctx, d: Directory, pool: Sequence[str], ext: str = "") -> str:
    while True:
        name = ctx.rng.choice(pool) + ctx.rng.choice(("", "_new", "_2", "_copy", "_v3")) + ext
        if name not in d.contents:
            return name


def _cwd(world: World) -> Directory:
    return world.instances[_FS]._current_dir


@_template("fs.mkdir_move", _FS)
def _fs_mkdir_move(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx)):
        return None
    place, name, _ = pick
    d = _new_name(ctx, place.dir, _DIRS)
    text = _one(
        ctx.rng,
        f"Create a folder named '{d}' {place.where} and move '{name}' into it.",
        f"Make a new directory '{d}' {place.where}, then put '{name}' inside it.",
    )
    calls = [*place.nav, _c("mkdir", dir_name=d), _c("mv", source=name, destination=d)]

    def check(w: World) -> bool:
        cwd = _cwd(w)
        return isinstance(cwd.contents.get(d), Directory) and name in cwd.contents[d].contents

    return _Draft(text, calls, check, changes=True)


@_template("fs.new_file", _FS)
def _fs_new_file(ctx: _Ctx) -> _Draft | None:
    place = ctx.rng.choice(_places(ctx))
    name, line = _new_name(ctx, place.dir, _STEMS, ".txt"), _line(ctx.rng)
    text = _one(
        ctx.rng,
        f"Create a file called '{name}' {place.where} and write '{line}' in it.",
        f"Please start a new file '{name}' {place.where} containing the sentence '{line}'.",
    )
    calls = [*place.nav, _c("touch", file_name=name), _c("echo", content=line, file_name=name)]

    def check(w: World) -> bool:
        item = _cwd(w).contents.get(name)
        return isinstance(item, File) and item.content == line

    return _Draft(text, calls, check, changes=True)


@_template("fs.overwrite", _FS)
def _fs_overwrite(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx)):
        return None
    place, name, _ = pick
    line = _line(ctx.rng)
    text = _one(
        ctx.rng,
        f"Replace everything in '{name}' {place.where} with the line '{line}'.",
        f"Overwrite '{name}' {place.where} so it only says '{line}'.",
    )
    calls = [*place.nav, _c("echo", content=line, file_name=name)]
    return _Draft(text, calls, lambda w: _cwd(w).contents[name].content == line, changes=True)


@_template("fs.cat", _FS)
def _fs_cat(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx)):
        return None
    place, name, _ = pick
    text = _one(
        ctx.rng,
        f"Show me what's inside '{name}' {place.where}.",
        f"Can you display the contents of '{name}' {place.where}?",
        f"Read '{name}' {place.where} out to me.",
    )
    return _Draft(text, [*place.nav, _c("cat", file_name=name)])


@_template("fs.grep", _FS)
def _fs_grep(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx, lambda f: bool(f.content.strip()))):
        return None
    place, name, file = pick
    words = sorted({w for w in re.findall(r"[A-Za-z]{4,}", file.content)})
    if not words:
        return None
    word = ctx.rng.choice(words)
    text = _one(
        ctx.rng,
        f"Which lines of '{name}' {place.where} mention '{word}'?",
        f"Search '{name}' {place.where} for lines containing '{word}'.",
    )
    return _Draft(text, [*place.nav, _c("grep", file_name=name, pattern=word)])


@_template("fs.sort", _FS)
def _fs_sort(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx, lambda f: len(f.content.splitlines()) >= 2)):
        return None
    place, name, _ = pick
    text = _one(
        ctx.rng,
        f"Sort the lines of '{name}' {place.where} alphabetically and show me the result.",
        f"Give me '{name}' {place.where} with its lines in sorted order.",
    )
    return _Draft(text, [*place.nav, _c("sort", file_name=name)])


@_template("fs.tail", _FS)
def _fs_tail(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx, lambda f: len(f.content.splitlines()) >= 3)):
        return None
    place, name, file = pick
    n = ctx.rng.randint(1, len(file.content.splitlines()) - 1)
    text = _one(
        ctx.rng,
        f"Show me the last {_count(n, 'line')} of '{name}' {place.where}.",
        f"What are the final {_count(n, 'line')} of '{name}' {place.where}?",
    )
    return _Draft(text, [*place.nav, _c("tail", file_name=name, lines=n)])


@_template("fs.wc", _FS)
def _fs_wc(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx)):
        return None
    place, name, _ = pick
    mode, unit = ctx.rng.choice((("l", "lines"), ("w", "words"), ("c", "characters")))
    text = _one(
        ctx.rng,
        f"How many {unit} are in '{name}' {place.where}?",
        f"Count the {unit} of '{name}' {place.where} for me.",
    )
    return _Draft(text, [*place.nav, _c("wc", file_name=name, mode=mode)])


@_template("fs.diff", _FS)
def _fs_diff(ctx: _Ctx) -> _Draft | None:
    if not (pick := _two_files(ctx)):
        return None
    place, a, b = pick
    text = _one(
        ctx.rng,
        f"Compare '{a}' and '{b}' {place.where} line by line.",
        f"What differs between '{a}' and '{b}' {place.where}?",
    )
    return _Draft(text, [*place.nav, _c("diff", file_name1=a, file_name2=b)])


@_template("fs.copy_as", _FS)
def _fs_copy_as(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx)):
        return None
    place, name, file = pick
    stem, dot, ext = name.rpartition(".")
    new = _new_name(
        ctx, place.dir, (f"{stem}_backup", f"{stem}_copy", f"copy_of_{stem}"), dot + ext
    )
    text = _one(
        ctx.rng,
        f"Make a copy of '{name}' {place.where} called '{new}'.",
        f"Duplicate '{name}' {place.where} as '{new}', keeping the original.",
    )

    def check(w: World) -> bool:
        cwd = _cwd(w)
        return name in cwd.contents and cwd.contents.get(new) == File(new, file.content)

    return _Draft(text, [*place.nav, _c("cp", source=name, destination=new)], check, True)


def _file_and_folder(ctx: _Ctx) -> tuple[_Place, str, str] | None:
    options = [
        (p, f, d)
        for p in _places(ctx)
        for f in _visible(p.dir, File)
        for d in _visible(p.dir, Directory)
        if f not in p.dir.contents[d].contents
    ]
    return ctx.rng.choice(options) if options else None


@_template("fs.copy_into", _FS)
def _fs_copy_into(ctx: _Ctx) -> _Draft | None:
    if not (pick := _file_and_folder(ctx)):
        return None
    place, name, d = pick
    text = _one(
        ctx.rng,
        f"Copy '{name}' {place.where} into the '{d}' subfolder, keeping the original where it is.",
        f"Put a copy of '{name}' {place.where} inside the '{d}' directory.",
    )

    def check(w: World) -> bool:
        cwd = _cwd(w)
        return name in cwd.contents and name in cwd.contents[d].contents

    return _Draft(text, [*place.nav, _c("cp", source=name, destination=d)], check, True)


@_template("fs.move_into", _FS)
def _fs_move_into(ctx: _Ctx) -> _Draft | None:
    if not (pick := _file_and_folder(ctx)):
        return None
    place, name, d = pick
    text = _one(
        ctx.rng,
        f"Move '{name}' {place.where} into the '{d}' folder next to it.",
        f"File '{name}' {place.where} away in its '{d}' subdirectory.",
    )

    def check(w: World) -> bool:
        cwd = _cwd(w)
        return name not in cwd.contents and name in cwd.contents[d].contents

    return _Draft(text, [*place.nav, _c("mv", source=name, destination=d)], check, True)


@_template("fs.rename", _FS)
def _fs_rename(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx)):
        return None
    place, name, _ = pick
    ext = "." + name.rpartition(".")[2]
    new = _new_name(ctx, place.dir, _STEMS, ext)
    text = _one(
        ctx.rng,
        f"Rename '{name}' {place.where} to '{new}'.",
        f"Change the name of '{name}' {place.where} to '{new}'.",
    )

    def check(w: World) -> bool:
        return name not in _cwd(w).contents and new in _cwd(w).contents

    return _Draft(text, [*place.nav, _c("mv", source=name, destination=new)], check, True)


@_template("fs.remove", _FS)
def _fs_remove(ctx: _Ctx) -> _Draft | None:
    if not (pick := _pick_file(ctx)):
        return None
    place, name, _ = pick
    text = _one(
        ctx.rng,
        f"Delete '{name}' {place.where}; I no longer need it.",
        f"Remove the file '{name}' {place.where}.",
    )
    calls = [*place.nav, _c("rm", file_name=name)]
    return _Draft(text, calls, lambda w: name not in _cwd(w).contents, True)


@_template("fs.cd_ls", _FS)
def _fs_cd_ls(ctx: _Ctx) -> _Draft | None:
    here = ctx.inst(_FS)._current_dir
    if not (dirs := _visible(here, Directory)):
        return None
    d = ctx.rng.choice(dirs)
    text = _one(
        ctx.rng,
        f"Go into the '{d}' folder and list what's in it.",
        f"Open the '{d}' directory and show me its contents.",
    )
    calls = [_c("cd", folder=d), _c("ls")]
    return _Draft(text, calls, lambda w: _cwd(w) is not None and _cwd(w).name == d)


@_template("fs.ls_all", _FS)
def _fs_ls_all(ctx: _Ctx) -> _Draft | None:
    text = _one(
        ctx.rng,
        "List everything in the current directory, hidden files included.",
        "Show all items here, including the hidden ones.",
    )
    return _Draft(text, [_c("ls", a=True)])


@_template("fs.find", _FS)
def _fs_find(ctx: _Ctx) -> _Draft | None:
    here = ctx.inst(_FS)._current_dir
    names: list[str] = []

    def walk(d: Directory) -> None:
        for n, item in d.contents.items():
            names.append(n)
            if isinstance(item, Directory):
                walk(item)

    walk(here)
    stems = sorted({m for n in names for m in re.findall(r"[a-z]{4,}", n)})
    if not stems:
        return None
    part = ctx.rng.choice(stems)
    text = _one(
        ctx.rng,
        f"Find every file or folder under the current directory whose name contains '{part}'.",
        f"Search below this folder for anything with '{part}' in its name.",
    )
    return _Draft(text, [_c("find", path=".", name=part)])


@_template("fs.du", _FS)
def _fs_du(ctx: _Ctx) -> _Draft | None:
    text = _one(
        ctx.rng,
        "How much disk space does the current directory use? Human-readable, please.",
        "Report the disk usage of this folder in a readable unit.",
    )
    return _Draft(text, [_c("du", human_readable=True)])


@_template("fs.pwd", _FS)
def _fs_pwd(ctx: _Ctx) -> _Draft | None:
    text = _one(ctx.rng, "Which directory am I in right now?", "Print the working directory.")
    return _Draft(text, [_c("pwd")])


@_template("fs.up_ls", _FS)
def _fs_up_ls(ctx: _Ctx) -> _Draft | None:
    here = ctx.inst(_FS)._current_dir
    if here.parent is None:
        return None
    text = _one(
        ctx.rng,
        "Go back up one level and show me what's there.",
        "Return to the parent folder and list its contents.",
    )
    return _Draft(
        text, [_c("cd", folder=".."), _c("ls")], lambda w: _cwd(w).name == here.parent.name
    )


@_template("fs.rmdir", _FS)
def _fs_rmdir(ctx: _Ctx) -> _Draft | None:
    here = ctx.inst(_FS)._current_dir
    empty = [d for d in _visible(here, Directory) if not here.contents[d].contents]
    if not empty:
        return None
    d = ctx.rng.choice(empty)
    text = _one(ctx.rng, f"Remove the empty '{d}' folder.", f"Delete the '{d}' directory.")
    return _Draft(text, [_c("rmdir", dir_name=d)], lambda w: d not in _cwd(w).contents, True)


@_template("fs.mkdir_cd_touch", _FS)
def _fs_mkdir_cd_touch(ctx: _Ctx) -> _Draft | None:
    here = ctx.inst(_FS)._current_dir
    d = _new_name(ctx, here, _DIRS)
    name = ctx.rng.choice(_STEMS) + ctx.rng.choice(_EXTS)
    text = _one(
        ctx.rng,
        f"Make a new directory '{d}' here, go into it, and create an empty file '{name}' there.",
        f"Set up a folder '{d}' in the current directory, step inside and touch '{name}'.",
    )
    calls = [_c("mkdir", dir_name=d), _c("cd", folder=d), _c("touch", file_name=name)]
    return _Draft(text, calls, lambda w: _cwd(w).name == d and name in _cwd(w).contents, True)
