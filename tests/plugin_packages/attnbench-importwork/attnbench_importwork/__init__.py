"""Third-party plugins that behave as real ones do, for attnbench's own tests.

* ``import-time-tensors`` builds tensors with multi-threaded torch ops when it is imported
  (document ids by ``argsort`` of 2 million numbers, a distance table), as a plugin
  porting attention-gym's mods does; its ``distance-bias`` variant and ``doc-order`` task
  must run to ``ok`` in worker processes all the same.
* ``long-name`` registers a variant whose name is 300 characters long, ``slash-name`` one
  with a ``/`` in it: each is refused at registration and reported by ``attnbench plugins``.
"""
