"""RANO-BM (Lin et al., Lancet Oncol 2015;16:e270-8): CNS response in brain metastases.

Unidimensional longest diameters of up to 5 CNS targets (>= 10 mm, perpendicular
>= 5 mm); PR >= 30% decrease of the sum from baseline; PD >= 20% increase of
the sum from the nadir with at least one lesion grown by >= 5 mm; new lesions,
unequivocal non-target progression and clinical deterioration are PD;
steroids as in RANO. The rules run in :mod:`imaging.response.rano` with the
``"ranobm"`` entry of :data:`~imaging.response.rano.VARIANTS`.
"""

from __future__ import annotations

from imaging.response.rano import VARIANTS, assess_ranobm

__all__ = ["VARIANTS", "assess_ranobm"]
