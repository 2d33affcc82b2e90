"""Data parallelism over every device (and host) with ``jax.sharding``, invisible to notebooks.

The training loop works on three kinds of arrays: the training state (parameters,
optimiser state, RNG counters), the device-resident dataset, and each step's batch
indices. With more than one device, :class:`DataParallel` places them on a one-axis
``Mesh`` named ``"data"``: state and dataset replicated, batch indices split along the
batch axis. The jitted step is unchanged: XLA's SPMD partitioner sees a sharded batch
and inserts the gradient all-reduce (and the cross-device mean for batch-norm
statistics), so N devices compute the same update as one device on the whole batch,
up to float rounding.

On one device every method is the identity, so nothing changes on a laptop or CPU --
unless the CPU is split into one device per core with :func:`use_cpu_devices`, which makes
the notebooks' small CNNs train faster. :func:`member_mesh` is the mesh on which
``train.sweep`` splits its members over devices.

Several hosts: call :func:`initialize` first in every process (it wraps
``jax.distributed.initialize``, which reads the coordinator address, process count and
id from the cluster environment or its arguments); every process then runs the same
notebook or script with the same seed. Arrays are assembled from each process's own
copy with ``jax.make_array_from_callback``, which is why each host loads the dataset.
Per-step metrics, evaluation sums and :func:`imgmine_jax.train.predict`'s outputs come back
replicated, so every process sees the same numbers; checkpoints are written by process 0
(:mod:`imgmine_jax.checkpoint`). ``tests/test_multiprocess.py`` runs two processes of one
CPU device each (gloo collectives) against one process with the same global batch.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "data"
MEMBERS = "members"


def use_cpu_devices(count: int) -> None:
    """Split the host CPU into ``count`` JAX devices (``jax_num_cpu_devices``); call before any JAX work.

    XLA:CPU runs one device's small convolutions (batch 32, 28x28 images) about as fast on
    one core as on two, so on a CPU-only machine the second core mostly waits. With one
    device per core, :class:`DataParallel` splits each batch over them and the ResNet's
    training step runs ~1.6x faster on a 2-core CPU, with the same update up to float
    rounding (``benchmarks/cpu_probes.md``). Accelerators are unaffected: the setting only
    adds CPU devices, and JAX's default devices stay the GPU or TPU.

    With more than one device it also enlarges XLA:CPU's thread pool (``$NPROC``, see
    :func:`cpu_threads`; a value already set wins): with XLA's default of one thread per
    core, the all-reduce between the devices can deadlock the pool and XLA aborts the
    process.

    Raises ``RuntimeError`` once JAX has run anything with another CPU device count (the
    count is fixed when the backend starts: restart the kernel and call this first).
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"use_cpu_devices needs a positive integer device count; got {count!r}")
    try:
        jax.config.update("jax_num_cpu_devices", int(count))
    except RuntimeError:
        have = len(jax.devices("cpu"))
        if have != count:
            raise RuntimeError(f"use_cpu_devices({count}) came after JAX started with {have} CPU "
                               f"device(s); call it before any JAX computation (restart the kernel)") from None
        return
    if count > 1 and THREADS_ENV not in os.environ:
        os.environ[THREADS_ENV] = str(cpu_threads(count))


THREADS_ENV = "NPROC"   # read by XLA when the CPU backend starts: the size of its thread pool


def cpu_threads(devices: int) -> int:
    """XLA:CPU thread-pool size for ``devices`` CPU devices: four threads per device, at least
    one per core.

    XLA's default is one thread per core, and with one device per core that pool can
    deadlock: an all-reduce blocks the pool thread it runs on until every device has
    joined, while the device it waits for needs a pool thread to get there. XLA then
    aborts the process after 40 s ("Termination timeout for all reduce"). On a 2-core CPU
    split into 2 devices a tight training loop hit this in every run with the default
    pool and never with 8 threads (``benchmarks/allreduce_stress.md``).
    """
    return max(os.cpu_count() or 1, 4 * int(devices))


def initialize(**kwargs: Any) -> None:
    """Join a multi-host run (``jax.distributed.initialize(**kwargs)``); call before any JAX work."""
    jax.distributed.initialize(**kwargs)


class DataParallel:
    """Where the training loop's arrays live: replicated state and data, sharded batches.

    ``devices``: the devices to use (default: every device of every process).
    """

    def __init__(self, devices: Sequence[jax.Device] | None = None):
        devices = list(jax.devices() if devices is None else devices)
        if not devices:
            raise ValueError("DataParallel needs at least one device; got an empty list")
        self.devices = devices
        self.mesh = Mesh(np.array(devices), (AXIS,)) if len(devices) > 1 else None
        if self.mesh is not None:
            self._replicated = NamedSharding(self.mesh, PartitionSpec())
            self._batch = NamedSharding(self.mesh, PartitionSpec(AXIS))
        else:
            self._single = jax.sharding.SingleDeviceSharding(devices[0])

    @property
    def size(self) -> int:
        """Number of devices a batch is split over."""
        return len(self.devices)

    def __repr__(self) -> str:
        return f"DataParallel({self.size} x {self.devices[0].platform})"

    def jit_kwargs(self) -> dict[str, Any]:
        """``jax.jit`` arguments for a step whose outputs (new state, metrics) stay replicated.

        Without them XLA may choose another layout for the returned state than the one it
        was given, and the next call would compile a second program.
        """
        return {} if self.mesh is None else {"out_shardings": self._replicated}

    def eval_batch_size(self, batch_size: int, num_examples: int) -> int:
        """``min(batch_size, num_examples)`` rounded up to a multiple of the device count: one
        batch shape for a whole evaluation pass that splits evenly (the padding is masked)."""
        return -(-min(batch_size, num_examples) // self.size) * self.size

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size % self.size:
            processes = len({d.process_index for d in self.devices})
            where = f" ({processes} processes)" if processes > 1 else ""
            raise ValueError(f"batch_size={batch_size} cannot be split evenly over {self.size} devices{where}; "
                             f"use a multiple of {self.size}")

    def replicate(self, tree):
        """Every leaf on every device (the training state, the dataset)."""
        if self.mesh is None:
            return jax.device_put(jax.tree.map(_addressable, tree), self._single)
        return jax.tree.map(lambda x: _put(x, self._replicated), tree)

    def shard_batch(self, idx: np.ndarray) -> jax.Array:
        """One step's batch -- indices, masks or images -- split along its first axis."""
        if self.mesh is None:
            return idx
        return _put(np.asarray(idx), self._batch)

    def shard_batches(self, batches: np.ndarray) -> list:
        """:meth:`shard_batch` of every row of ``batches`` (an epoch's steps), in one transfer."""
        if self.mesh is not None and jax.process_count() > 1:
            return [self.shard_batch(b) for b in batches]
        sharding = self._single if self.mesh is None else self._batch
        return jax.device_put(list(np.asarray(batches)), sharding)


def member_mesh(members: int, devices: Sequence[jax.Device] | None = None) -> Mesh | None:
    """A one-axis ``Mesh`` (``"members"``) over as many devices as split ``members`` evenly.

    For :func:`imgmine_jax.train.sweep`: each device trains its share of the members. None
    when that is one device (a single device, a prime member count, or several processes,
    where every process runs the whole sweep).
    """
    if devices is None:
        if jax.process_count() > 1:
            return None
        devices = jax.local_devices()
    count = max(k for k in range(1, len(devices) + 1) if members % k == 0)
    return Mesh(np.array(list(devices)[:count]), (MEMBERS,)) if count > 1 else None


def _addressable(x):
    """``x``, or its host copy when it lives on other processes' devices too (a replicated
    global array placed on this process's devices only: JAX has no cross-host transfer)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(np.asarray(jax.random.key_data(x)), impl=jax.random.key_impl(x))
        return np.asarray(x)
    return x


def _put(x, sharding: NamedSharding) -> jax.Array:
    """Place ``x`` with ``sharding``; across processes, assemble it from each process's copy."""
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(_put(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
