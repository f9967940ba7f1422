from rnstore.cli import main

main()
