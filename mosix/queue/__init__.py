"""The node agent's queue (mosrun -q/-Q, mosq): one folder for all of it.

``queue.py`` decides which queued job starts next (pure logic), ``runner.py``
starts jobs and holds their slots, ``requests.py`` answers Enqueue, mosq's
listing and actions, ``saved.py`` is the queue's part of the agent's state
file.  It leans on the home side's control socket (mosix.home_agent); the
home side gets the queue's parts through its constructors (mosix.node).
mosrun's side of the queue (waiting as ``mosqueue``) is mosix.mosrun.queue_wait.
"""
