"""Run configs: validation errors name the file, line and field; paths resolve against the config."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import ConfigError, load_config

GOOD = """\
name: t
dataset:
  root: data
  mask: "{patient_id}/{study_date}/mask.nii.gz"
output_dir: out
criteria: [recist]
"""


def _write(tmp_path: Path, text: str, *, make_root: bool = True) -> Path:
    if make_root:
        (tmp_path / "data").mkdir(exist_ok=True)
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_paths_are_relative_to_the_config(tmp_path):
    cfg = load_config(_write(tmp_path, GOOD))
    assert cfg.dataset.root == (tmp_path / "data").resolve()
    assert cfg.output_dir == (tmp_path / "out").resolve()
    assert cfg.lesions.min_volume_mm3 == 10.0  # documented default


def test_shipped_sample_config_is_valid():
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "sample.yaml")
    assert cfg.criteria == ["recist", "irecist"]


def test_unknown_key_names_field_and_line(tmp_path):
    text = GOOD.replace("  mask:", "  masks_typo: x\n  mask:")
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, text))
    assert "c.yaml:4: dataset.masks_typo: Extra inputs are not permitted" in str(exc.value)


def test_wrong_type_names_field_and_line(tmp_path):
    text = GOOD + "lesions:\n  min_volume_mm3: lots\n"
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, text))
    assert "c.yaml:8: lesions.min_volume_mm3:" in str(exc.value)


def test_unknown_criterion_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"criteria\.0: Input should be 'recist'"):
        load_config(_write(tmp_path, GOOD.replace("[recist]", "[recist9]")))


def test_missing_required_field(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset: .*`mask` \(the label map template\) is needed unless segmentations.source is archive"):
        load_config(_write(tmp_path, GOOD.replace('  mask: "{patient_id}/{study_date}/mask.nii.gz"\n', "")))


def test_archive_segmentations_need_no_mask_and_take_series_rules(tmp_path):
    text = GOOD.replace('  mask: "{patient_id}/{study_date}/mask.nii.gz"\n',
                        "  segmentations: {source: archive, exclude: ['edema*']}\n"
                        "  series: {measure: {kernel: ['*B30*'], slice_thickness_mm: [4, 6]}}\n")
    text = "\n".join(line for line in text.splitlines() if "lesion_metadata" not in line) + "\n"
    cfg = load_config(_write(tmp_path, text))
    assert cfg.dataset.source == "archive" and cfg.dataset.mask is None
    assert cfg.dataset.series_rule("measure").slice_thickness_mm == (4.0, 6.0)
    with pytest.raises(ConfigError, match=r"slice_thickness_mm must be \[min, max\]"):
        load_config(_write(tmp_path, text.replace("[4, 6]", "[6, 4]")))
    with pytest.raises(ConfigError, match=r"series\.dwi"):
        load_config(_write(tmp_path, text.replace("measure:", "dwi:")))
    cfg = load_config(_write(tmp_path, text.replace("series: {measure:", "series: {flair: {prefer: ['*FLAIR*']}, measure:")))
    assert cfg.dataset.series_rule("flair").prefer == ["*FLAIR*"]


def test_bad_template_field(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset\.mask: .*only \{patient_id\}, \{study_date\} and \{timepoint\}"):
        load_config(_write(tmp_path, GOOD.replace("{patient_id}/{study_date}", "{patient}/{study_date}")))


def test_set_overrides_by_dotted_path(tmp_path):
    cfg = load_config(_write(tmp_path, GOOD), ["output_dir=/tmp/elsewhere", "lesions.min_volume_mm3=0.5", "criteria=[recist, irecist]"])
    assert cfg.output_dir == Path("/tmp/elsewhere")
    assert cfg.lesions.min_volume_mm3 == 0.5
    assert cfg.criteria == ["recist", "irecist"]
    with pytest.raises(ConfigError, match="lesions.nonsense: Extra inputs"):
        load_config(_write(tmp_path, GOOD), ["lesions.nonsense=1"])


def test_not_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "dataset: [unclosed\n"))


def test_missing_paths_name_field_line_and_path(tmp_path):
    text = GOOD.replace("  root: data\n", "  root: data\n  clinical: nowhere.csv\n")
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, text, make_root=False))
    message = str(exc.value)
    assert f"c.yaml:3: dataset.root: no such folder: {tmp_path / 'data'}" in message
    assert f"c.yaml:4: dataset.clinical: no such file: {tmp_path / 'nowhere.csv'}" in message


def test_a_set_value_that_is_not_yaml_is_taken_as_text(tmp_path):
    cfg = load_config(_write(tmp_path, GOOD), ["dataset.mask={patient_id}/{study_date}/seg.nii.gz"])
    assert cfg.dataset.mask == "{patient_id}/{study_date}/seg.nii.gz"


@pytest.mark.parametrize(("setting", "message"), [
    ("dataset.mask=m.nii.gz", r"`mask` \(a label map template\) is for source: files"),
    ("lesions.mode=components", r"lesions.mode: components renumbers"),
])
def test_archive_segmentations_refuse_settings_that_would_be_ignored(tmp_path, setting, message):
    text = GOOD.replace('  mask: "{patient_id}/{study_date}/mask.nii.gz"\n', "  segmentations: {source: archive}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text), [setting])


def test_include_exclude_need_archive_segmentations(tmp_path):
    with pytest.raises(ConfigError, match=r"include/exclude name segments"):
        load_config(_write(tmp_path, GOOD), ["dataset.segmentations.exclude=[edema*]"])
