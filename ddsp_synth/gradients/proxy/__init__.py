"""Neural proxies of devices: the network and its stage (:mod:`.net`), their files
(:mod:`.files`), training and accuracy (:mod:`.train`, :mod:`.source`) and card
(:mod:`.card`)."""
