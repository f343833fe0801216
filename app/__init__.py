"""Journey Guide: a customer-journey chatbot for company websites."""

import os

# The service does many small matrix products (stage detection, scoring); BLAS threads only contend with
# the request threads and onnxruntime. Set before numpy is imported; an explicit setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
