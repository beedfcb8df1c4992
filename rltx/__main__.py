from rltx.cli import run

run()
