"""Type stubs of the native module (crates/python): see the package's modules for the API."""

from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

build_info: dict

class Reading:
    digit: int
    confidence: float
    uncertain: bool
    bbox: Tuple[int, int, int, int]
    top: List[Tuple[int, float]]
    @property
    def probabilities(self) -> npt.NDArray[np.float32]: ...
    @property
    def normalized(self) -> npt.NDArray[np.float32]: ...

class NumberReading:
    number: str
    confidence: float
    uncertain: bool
    @property
    def digits(self) -> List[Reading]: ...

class NativeModel:
    spec: str
    kind: str
    temperature: float
    parameter_count: int
    test_accuracy: Optional[float]
    def __init__(self, spec: str) -> None: ...
    def proba_f32(self, images: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...
    def proba_u8(self, images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]: ...
    def evaluate(self, split: str = "test", data_dir: Optional[str] = None) -> str: ...
    def score_folder(self, folder: str, threads: int = 0) -> str: ...
    def realworld(
        self,
        per_style: int,
        numbers: int,
        number_style: str,
        split: str,
        seed: int,
        data_dir: Optional[str] = None,
        threads: int = 0,
    ) -> str: ...
    def time_read(self, source: Union[str, bytes], runs: int) -> List[float]: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(spec: str, bytes: bytes) -> NativeModel: ...
    def save(self, path: str) -> None: ...
    def export_onnx(self, path: str) -> int: ...
    def read_one(
        self, source: Union[str, bytes, npt.NDArray[np.uint8]], number: bool = False, top: int = 1
    ) -> Union[Reading, NumberReading, str]: ...
    def read_many(
        self,
        sources: Sequence[Union[str, bytes, npt.NDArray[np.uint8]]],
        number: bool = False,
        threads: int = 0,
    ) -> List[Union[Reading, NumberReading, str]]: ...

def set_precision(name: str) -> None: ...
def precision() -> str: ...
def load_mnist(
    split: str = "train", data_dir: Optional[str] = None
) -> Tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]: ...
def train(
    model: str,
    out: str,
    epochs: Optional[int] = None,
    seed: int = 1,
    split_seed: int = 1,
    validation: int = 5000,
    limit: Optional[int] = None,
    resume: bool = False,
    max_batches: Optional[int] = None,
    data_dir: Optional[str] = None,
    progress: Optional[Callable[[str, Any], None]] = None,
    teacher: Optional[str] = None,
    teacher_weight: float = 0.5,
) -> Optional[str]: ...
def fit(
    model: str,
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.uint8],
    validation: int,
    seed: int = 1,
    epochs: Optional[int] = None,
    svm_c: Optional[float] = None,
    svm_gamma: Optional[float] = None,
    svm_components: Optional[int] = None,
    svm_deskew: bool = True,
    progress: Optional[Callable[[str, Any], None]] = None,
) -> NativeModel: ...
def shipped_models() -> List[str]: ...
