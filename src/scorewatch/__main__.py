from scorewatch.cli import main

main()
