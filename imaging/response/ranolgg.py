"""RANO-LGG (van den Bent et al., Lancet Oncol 2011;12:583-93): response of low-grade, non-enhancing glioma.

The non-enhancing tumour is measured on T2/FLAIR: the course's ``target`` lesions are the T2/FLAIR lesions
(``long_axis_mm`` and ``perpendicular_mm`` on T2/FLAIR), measurable when both diameters are >= 10 mm;
the burden is their sum of products. CR: all T2/FLAIR disease gone, no new or increased enhancement (any
enhancement resolved), off steroids (physiological doses allowed), clinically stable; PR: >= 50% decrease from
baseline; minor response (MR): 25% to < 50% decrease; SD: less than 25% decrease to less than 25% increase; PR,
MR and SD with no new or increased enhancement, steroids not above baseline and a stable patient; PD: >= 25%
increase from the smallest measurement, a new lesion, new or increased enhancement (``clinical.enhancement``),
or clinical deterioration. The rules run in :mod:`imaging.response.rano` with the ``"ranolgg"`` entry of
:data:`~imaging.response.rano.VARIANTS`; the readings taken are in docs/response.md.
"""

from __future__ import annotations

from imaging.response.rano import MR, VARIANTS, assess_ranolgg

__all__ = ["MR", "VARIANTS", "assess_ranolgg"]
