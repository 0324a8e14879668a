"""gigafactory: run a shared AI gigafactory.

The pure scheduling brain lives in :mod:`gigafactory.core`; the digital twin
(:mod:`gigafactory.twin`), the control plane (:mod:`gigafactory.service`) and the
executors (:mod:`gigafactory.executors`) are thin drivers around it.
"""

__version__ = "0.1.0"
