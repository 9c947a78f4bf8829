from schedd.cli import main

main()
