"""Staging storage: the local default makes saved files durable before an upload is acknowledged."""

import os

from django.core.files.storage import FileSystemStorage


class DurableFileSystemStorage(FileSystemStorage):
    """FileSystemStorage that fsyncs each file (and its directory) once written.

    An upload's 201 promises the bytes survive a crash; the page cache alone does not.
    """

    def _save(self, name, content):
        name = super()._save(name, content)
        path = self.path(name)
        file_descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(file_descriptor)
        finally:
            os.close(file_descriptor)
        directory_descriptor = os.open(os.path.dirname(path), os.O_RDONLY)
        try:
            os.fsync(directory_descriptor)
        finally:
            os.close(directory_descriptor)
        return name
