"""Protocol dialogs on a fake transport and a virtual clock: no sockets, no sleeping."""
