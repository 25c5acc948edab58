"""`python server.py ...` is `rtclone serve ...`."""
from rtclone.cli import main
raise SystemExit(main(["serve", *__import__("sys").argv[1:]]))
