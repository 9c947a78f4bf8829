from schedctl.app import main

main()
