from shiftlens.cli import main

main()
