"""Long series are cut to a few points per pixel on the server with MinMax-LTTB (tsdownsample, in
Rust): the peaks survive and the payload stays small. The full table stays downloadable."""

from __future__ import annotations

from typing import Any

from ..sources.frames import optional


def indices(x: Any, ys: list[Any], n_out: int) -> Any:
    """Sorted row positions to keep so that each series in `ys` (over ascending `x`) keeps its shape."""
    np = optional("numpy", "downsampling (numpy)", "data")
    count = len(x)
    if count <= n_out or n_out < 4:
        return np.arange(count)
    tsd = optional("tsdownsample", "downsampling (tsdownsample)", "data")
    xs = np.ascontiguousarray(x, dtype=np.float64)
    keep: list[Any] = []
    for y in ys:
        values = np.ascontiguousarray(y, dtype=np.float64)
        sampler = tsd.NaNMinMaxLTTBDownsampler() if np.isnan(values).any() else tsd.MinMaxLTTBDownsampler()
        keep.append(sampler.downsample(xs, values, n_out=n_out))
    return np.unique(np.concatenate(keep)) if keep else np.arange(0)
