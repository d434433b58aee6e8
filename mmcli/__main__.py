from mmcli._entry import main

main()
