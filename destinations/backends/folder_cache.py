"""Folder ids of the cloud drives that address folders by id (Google Drive, Box): looked up or made once, then
reused by every attempt of this process."""

import threading
from collections import OrderedDict

FolderKey = tuple[str, str, str]  # (the owning destination, or a scope of its own; parent folder id; name)


class FolderIdCache:
    """A bounded, thread-safe LRU of folder ids. A folder deleted behind our back is found out by the provider's
    404; the backend then forgets what it cached for that owner and looks again."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[FolderKey, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: FolderKey) -> str | None:
        with self._lock:
            if key in self._ids:
                self._ids.move_to_end(key)
            return self._ids.get(key)

    def put(self, key: FolderKey, folder_id: str) -> None:
        with self._lock:
            self._ids[key] = folder_id
            self._ids.move_to_end(key)
            while len(self._ids) > self.size:
                self._ids.popitem(last=False)

    def forget(self, owner: str) -> None:
        with self._lock:
            for key in [key for key in self._ids if key[0] == owner]:
                del self._ids[key]
