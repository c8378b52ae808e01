"""File tools: confined to their root whatever the path says."""

import os
from pathlib import Path

import pytest

from asynclm.tooling import Tool, ToolError
from asynclm.tools.files import MAX_LIST_ENTRIES, PathNotAllowedError, make_file_tools


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """root/ with a file, a subfolder and symlinks; a secret next to it, outside."""
    base = tmp_path / "root"
    (base / "sub").mkdir(parents=True)
    (base / "hello.txt").write_text("hello world")
    (base / "sub" / "inner.txt").write_text("inner")
    (tmp_path / "secret.txt").write_text("top secret")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "more.txt").write_text("more secrets")
    (base / "link_out").symlink_to(tmp_path / "secret.txt")
    (base / "link_dir_out").symlink_to(tmp_path / "outside", target_is_directory=True)
    (base / "link_in").symlink_to(base / "sub" / "inner.txt")
    return base


def by_name(tools: list[Tool]) -> dict[str, Tool]:
    return {t.name: t for t in tools}


@pytest.mark.anyio
async def test_read_and_list(root: Path) -> None:
    tools = by_name(make_file_tools(root))
    assert set(tools) == {"read_file", "list_dir"}
    assert await tools["read_file"].invoke({"path": "hello.txt"}) == "hello world"
    assert await tools["read_file"].invoke({"path": "./sub/inner.txt"}) == "inner"
    assert await tools["read_file"].invoke({"path": "link_in"}) == "inner"
    assert await tools["list_dir"].invoke({}) == [
        "hello.txt",
        "link_dir_out/",
        "link_in",
        "link_out",
        "sub/",
    ]
    assert await tools["list_dir"].invoke({"path": "sub"}) == ["inner.txt"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../secret.txt", "'..' is not allowed"),
        ("sub/../../secret.txt", "'..' is not allowed"),
        ("sub/..", "'..' is not allowed"),
        ("..\\secret.txt", "'..' is not allowed"),
        ("/etc/passwd", "absolute paths are not allowed"),
        ("//etc/passwd", "absolute paths are not allowed"),
        ("link_out", "outside the allowed directory"),
        ("link_dir_out/more.txt", "outside the allowed directory"),
        ("hello.txt\x00.png", "NUL"),
    ],
)
async def test_read_traversal_refused(root: Path, path: str, reason: str) -> None:
    read_file = by_name(make_file_tools(root))["read_file"]
    with pytest.raises(PathNotAllowedError, match=reason):
        await read_file.invoke({"path": path})


@pytest.mark.anyio
async def test_absolute_path_into_root_refused(root: Path) -> None:
    read_file = by_name(make_file_tools(root))["read_file"]
    with pytest.raises(PathNotAllowedError, match="absolute"):
        await read_file.invoke({"path": str(root / "hello.txt")})


@pytest.mark.anyio
async def test_list_traversal_refused(root: Path) -> None:
    list_dir = by_name(make_file_tools(root))["list_dir"]
    for path in ("..", "/", "link_dir_out"):
        with pytest.raises(PathNotAllowedError):
            await list_dir.invoke({"path": path})


@pytest.mark.anyio
async def test_read_errors(root: Path) -> None:
    tools = by_name(make_file_tools(root, max_bytes=5))
    with pytest.raises(ToolError, match="larger than the 5-byte limit"):
        await tools["read_file"].invoke({"path": "hello.txt"})
    with pytest.raises(ToolError, match="not a file"):
        await tools["read_file"].invoke({"path": "sub"})
    with pytest.raises(ToolError, match="not a file"):
        await tools["read_file"].invoke({"path": "missing.txt"})
    with pytest.raises(ToolError, match="not a directory"):
        await tools["list_dir"].invoke({"path": "hello.txt"})


@pytest.mark.anyio
async def test_write(root: Path) -> None:
    tools = by_name(make_file_tools(root, writable=True, max_bytes=100))
    write_file = tools["write_file"]
    assert await write_file.invoke({"path": "new/deep/a.txt", "content": "héllo"}) == (
        "wrote 6 bytes to new/deep/a.txt"
    )
    assert (root / "new" / "deep" / "a.txt").read_text() == "héllo"
    assert await tools["read_file"].invoke({"path": "new/deep/a.txt"}) == "héllo"
    with pytest.raises(ToolError, match="100-byte limit"):
        await write_file.invoke({"path": "big.txt", "content": "x" * 101})
    with pytest.raises(ToolError, match="is a directory"):
        await write_file.invoke({"path": "sub", "content": "x"})
    with pytest.raises(ToolError, match="is a directory"):
        await write_file.invoke({"path": ".", "content": "x"})


@pytest.mark.anyio
@pytest.mark.parametrize(
    "path", ["../evil.txt", "/tmp/evil.txt", "link_out", "link_dir_out/evil.txt", "a\x00b"]
)
async def test_write_traversal_refused(root: Path, path: str) -> None:
    write_file = by_name(make_file_tools(root, writable=True))["write_file"]
    before = (root.parent / "secret.txt").read_text()
    with pytest.raises(PathNotAllowedError):
        await write_file.invoke({"path": path, "content": "pwned"})
    assert (root.parent / "secret.txt").read_text() == before
    assert not (root.parent / "outside" / "evil.txt").exists()
    assert not (root.parent / "evil.txt").exists()


@pytest.mark.anyio
async def test_list_caps_entries(tmp_path: Path) -> None:
    for i in range(MAX_LIST_ENTRIES + 5):
        (tmp_path / f"f{i:05d}").touch()
    names = await by_name(make_file_tools(tmp_path))["list_dir"].invoke({})
    assert len(names) == MAX_LIST_ENTRIES + 1
    assert names[-1].startswith("... (more than")


def test_factory_validation(tmp_path: Path) -> None:
    (tmp_path / "file").touch()
    with pytest.raises(ValueError, match="not a directory"):
        make_file_tools(tmp_path / "file")
    with pytest.raises(ValueError, match="not a directory"):
        make_file_tools(tmp_path / "missing")
    with pytest.raises(ValueError, match="max_bytes"):
        make_file_tools(tmp_path, max_bytes=0)


def test_root_given_through_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.txt").write_text("a")
    alias = tmp_path / "alias"
    alias.symlink_to(real, target_is_directory=True)
    read_file = by_name(make_file_tools(alias))["read_file"]
    assert read_file.function is not None
    assert read_file.function(path="a.txt") == "a"
    assert os.path.islink(alias)
