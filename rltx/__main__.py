from rltx.cli import main

main()
