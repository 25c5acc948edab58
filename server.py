"""`python server.py ...` is `rtclone serve ...`."""
if __name__ == "__main__":  # guarded: the server's spawned worker processes import this file again
    from rtclone.cli import main
    raise SystemExit(main(["serve", *__import__("sys").argv[1:]]))
