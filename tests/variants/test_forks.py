import os

from variants import forks


def test_a_forked_child_is_a_new_generation() -> None:
    mine = forks.generation()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.write(write, str(forks.generation()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        childs = int(pipe.read())
    os.waitpid(child, 0)
    assert childs != mine and forks.generation() == mine
