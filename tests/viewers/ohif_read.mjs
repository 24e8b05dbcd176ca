#!/usr/bin/env node
// OHIF's own reading of a DICOM SR (TID 1500), without a browser.
//
//   node ohif_read.mjs [--legacy] SR_FILE IMAGE_FILE...
//
// Default: OHIF v3's rehydration (extensions/cornerstone-dicom-sr hydrateStructuredReport), i.e.
// `adaptersSR.Cornerstone3D.MeasurementReport.generateToolState(dataset, sopInstanceUIDToImageId, metaData)`
// of @cornerstonejs/adapters, with a cornerstone metadata provider fed from the image files' headers
// (the same values cornerstone's wadouri provider gives). --legacy: OHIF v2's path,
// `dcmjs.adapters.Cornerstone.MeasurementReport.generateToolState(dataset)` (image coordinates only).
//
// Prints one JSON list on stdout, one object per measurement recovered:
//   {toolType, label, labelSource, trackingIdentifier, trackingUniqueIdentifier, rehydratable,
//    referencedSOPInstanceUID, frameNumber, referencedImageId, points (world LPS mm, as the adapter
//    returns them), points_image (legacy: the SCOORD pixel coordinates), length, width, unit,
//    finding, findingSites}
// Everything the adapters log (they console.log every measurement they rebuild) goes to stderr.

import fs from 'node:fs';
import { pathToFileURL } from 'node:url';

const writeStdout = process.stdout.write.bind(process.stdout);

/** Sends whatever the libraries print to stderr; returns a writer for the real stdout. */
export function reserveStdout() {
  process.stdout.write = (chunk, encoding, callback) => process.stderr.write(chunk, encoding, callback);
  for (const level of ['log', 'info', 'debug']) {
    console[level] = (...args) => console.error(...args);
  }
  return (text) => writeStdout(text);
}

export async function loadLibraries() {
  const dcmjs = (await import('dcmjs')).default;
  const core = await import('@cornerstonejs/core');
  const adapters = await import('@cornerstonejs/adapters');
  return { dcmjs, core, adapters };
}

/** A DICOM file read and naturalized the way OHIF's local-file data source does it. */
export function readNaturalized(dcmjs, path) {
  const buffer = fs.readFileSync(path);
  const arrayBuffer = buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength);
  const dicomDict = dcmjs.data.DicomMessage.readFile(arrayBuffer);
  const dataset = dcmjs.data.DicomMetaDictionary.naturalizeDataset(dicomDict.dict);
  dataset._meta = dcmjs.data.DicomMetaDictionary.namifyDataset(dicomDict.meta);
  return dataset;
}

const first = (sequence) => (Array.isArray(sequence) ? sequence[0] : sequence);
const numbers = (value) => (value === undefined || value === null ? undefined : [].concat(value).map(Number));

/** Per-frame plane values of a multi-frame image (functional groups), or of a single-frame one. */
function planeOf(instance, frameIndex) {
  let position = numbers(instance.ImagePositionPatient);
  let orientation = numbers(instance.ImageOrientationPatient);
  let spacing = numbers(instance.PixelSpacing);
  let thickness = instance.SliceThickness;
  const groups = [first(instance.SharedFunctionalGroupsSequence), instance.PerFrameFunctionalGroupsSequence?.[frameIndex]];
  for (const group of groups) {
    if (!group) continue;
    const pos = first(group.PlanePositionSequence);
    const ori = first(group.PlaneOrientationSequence);
    const pix = first(group.PixelMeasuresSequence);
    if (pos?.ImagePositionPatient) position = numbers(pos.ImagePositionPatient);
    if (ori?.ImageOrientationPatient) orientation = numbers(ori.ImageOrientationPatient);
    if (pix?.PixelSpacing) spacing = numbers(pix.PixelSpacing);
    if (pix?.SliceThickness !== undefined) thickness = pix.SliceThickness;
  }
  return { position, orientation, spacing, thickness };
}

/**
 * imagePlaneModule as cornerstone's wadouri metadata provider (and @cornerstonejs/metadata's
 * imagePlaneCalibrated, and OHIF's own MetadataProvider) build it: rowPixelSpacing = PixelSpacing[0]
 * (the spacing between rows), columnPixelSpacing = PixelSpacing[1] (between columns).
 */
function imagePlaneModule(instance, frameIndex) {
  const { position, orientation, spacing, thickness } = planeOf(instance, frameIndex);
  return {
    frameOfReferenceUID: instance.FrameOfReferenceUID,
    rows: instance.Rows,
    columns: instance.Columns,
    imageOrientationPatient: orientation,
    rowCosines: orientation ? orientation.slice(0, 3) : null,
    columnCosines: orientation ? orientation.slice(3, 6) : null,
    imagePositionPatient: position,
    sliceThickness: thickness,
    sliceLocation: instance.SliceLocation,
    pixelSpacing: spacing,
    rowPixelSpacing: spacing ? spacing[0] : 1,
    columnPixelSpacing: spacing ? spacing[1] : 1,
    usingDefaultValues: !spacing,
  };
}

/**
 * Registers the images with cornerstone's metadata registry. Returns
 * {images: Map imageId -> entry, sopInstanceUIDToImageId: {"<SOPInstanceUID>:<frame>": imageId}}
 * (the map as OHIF's hydrateStructuredReport builds it, frame 1 for a single-frame image).
 */
export function registerImages(dcmjs, core, paths) {
  const images = new Map();
  const sopInstanceUIDToImageId = {};
  for (const path of paths) {
    const instance = readNaturalized(dcmjs, path);
    delete instance.PixelData;
    const frames = Number(instance.NumberOfFrames || 1);
    for (let frame = 1; frame <= frames; frame++) {
      const imageId = frames > 1
        ? `dicomfile:${instance.SOPInstanceUID}?frame=${frame}`
        : `dicomfile:${instance.SOPInstanceUID}`;
      images.set(imageId, { path, instance, frame, frames, plane: imagePlaneModule(instance, frame - 1) });
      sopInstanceUIDToImageId[`${instance.SOPInstanceUID}:${frame}`] = imageId;
    }
  }
  const provider = (type, imageId) => {
    const entry = images.get(imageId);
    if (!entry) return undefined;
    const { instance } = entry;
    switch (type) {
      case 'imagePlaneModule':
        return entry.plane;
      case 'instance':
        return instance;
      case 'sopCommonModule':
        return { sopClassUID: instance.SOPClassUID, sopInstanceUID: instance.SOPInstanceUID };
      case 'frameNumber':
        return entry.frame;
      case 'generalSeriesModule':
        return {
          modality: instance.Modality,
          seriesInstanceUID: instance.SeriesInstanceUID,
          seriesNumber: instance.SeriesNumber,
          studyInstanceUID: instance.StudyInstanceUID,
          seriesDate: instance.SeriesDate,
          seriesTime: instance.SeriesTime,
        };
      case 'generalStudyModule':
        return {
          studyInstanceUID: instance.StudyInstanceUID,
          studyDate: instance.StudyDate,
          studyTime: instance.StudyTime,
          accessionNumber: instance.AccessionNumber,
        };
      case 'patientModule':
        return { patientName: instance.PatientName, patientId: instance.PatientID };
      default:
        return undefined;
    }
  };
  core.metaData.addProvider(provider, 10000);
  return { images, sopInstanceUIDToImageId };
}

const plainCode = (code) => {
  const item = first(code);
  if (!item) return null;
  return { CodeValue: item.CodeValue, CodingSchemeDesignator: item.CodingSchemeDesignator, CodeMeaning: item.CodeMeaning };
};
const codeMeaning = (item) => first(item?.ConceptNameCodeSequence)?.CodeMeaning;
const number = (value) => (value === undefined || value === null || value === '' ? null : Number(value));

/** Tracking Identifier text of each measurement group, by its Tracking Unique Identifier, in order. */
function trackingIdentifiers(dataset) {
  const root = [].concat(dataset.ContentSequence ?? []);
  const report = root.find((item) => codeMeaning(item) === 'Imaging Measurements');
  const groups = [].concat(report?.ContentSequence ?? []).filter((item) => codeMeaning(item) === 'Measurement Group');
  return groups.map((group) => {
    const items = [].concat(group.ContentSequence ?? []);
    return {
      text: items.find((item) => codeMeaning(item) === 'Tracking Identifier')?.TextValue ?? null,
      uid: items.find((item) => codeMeaning(item) === 'Tracking Unique Identifier')?.UID ?? null,
    };
  });
}

const FREE_TEXT = 'CORNERSTONEFREETEXT';

/**
 * The label OHIF shows: its getLabelFromDCMJSImportedToolData (annotation.data.label, which the adapter
 * takes from a TEXT Comment (DCM 121106) item of the group, else from a CORNERSTONEFREETEXT finding site,
 * else from a CORNERSTONEFREETEXT finding), and which of those it came from.
 */
function ohifLabel(toolData) {
  const findingSites = (toolData.findingSites ?? []).map((site) => first(site));
  const finding = first(toolData.finding);
  const comment = toolData.commentGroup?.TextValue;
  const site = findingSites.find((fs) => fs?.CodeValue === FREE_TEXT)?.CodeMeaning;
  const freeFinding = finding?.CodeValue === FREE_TEXT ? finding.CodeMeaning : undefined;
  const label = toolData.annotation?.data?.label || site || freeFinding || null;
  let labelSource = null;
  if (label !== null) {
    if (comment && label === comment) labelSource = 'comment';
    else if (site && label === site) labelSource = 'findingSite';
    else if (freeFinding && label === freeFinding) labelSource = 'finding';
  }
  return { label, labelSource };
}

function readCornerstone3D({ dcmjs, core, adapters }, srPath, imagePaths) {
  const { MeasurementReport } = adapters.adaptersSR.Cornerstone3D;
  const { sopInstanceUIDToImageId } = registerImages(dcmjs, core, imagePaths);
  const dataset = readNaturalized(dcmjs, srPath);
  const tracking = trackingIdentifiers(dataset);
  const byType = MeasurementReport.generateToolState(dataset, sopInstanceUIDToImageId, core.metaData);
  const out = [];
  for (const [toolType, list] of Object.entries(byType)) {
    for (const toolData of list) {
      const { annotation } = toolData;
      const data = annotation.data ?? {};
      const referencedImageId = annotation.metadata?.referencedImageId ?? null;
      const stats = data.cachedStats?.[`imageId:${referencedImageId}`] ?? {};
      const uid = toolData.TrackingUniqueIdentifier ?? null;
      const trackingIdentifier = tracking.find((t) => uid && t.uid === uid)?.text ?? null;
      out.push({
        toolType,
        ...ohifLabel(toolData),
        trackingIdentifier,
        trackingUniqueIdentifier: uid,
        rehydratable: Boolean(trackingIdentifier && MeasurementReport.getAdapterForTrackingIdentifier(trackingIdentifier)),
        referencedSOPInstanceUID: toolData.sopInstanceUid ?? null,
        frameNumber: number(data.frameNumber),
        referencedImageId,
        points: (data.handles?.points ?? []).map((p) => Array.from(p, Number)),
        points_image: null,
        length: number(stats.length),
        width: number(stats.width),
        unit: stats.unit ?? null,
        finding: plainCode(toolData.finding),
        findingSites: (toolData.findingSites ?? []).map(plainCode),
      });
    }
  }
  console.error(`ohif_read: ${out.length} of ${tracking.length} measurement groups recovered (Cornerstone3D adapter)`);
  return out;
}

function readLegacy({ dcmjs }, srPath) {
  const dataset = readNaturalized(dcmjs, srPath);
  const tracking = trackingIdentifiers(dataset);
  const byType = dcmjs.adapters.Cornerstone.MeasurementReport.generateToolState(dataset);
  const out = [];
  for (const [toolType, list] of Object.entries(byType)) {
    for (const state of list) {
      const handles = state.handles ?? {};
      const order = ['start', 'end', 'perpendicularStart', 'perpendicularEnd'];
      const names = [...order.filter((k) => handles[k]), ...Object.keys(handles).filter((k) => !order.includes(k) && k !== 'textBox')];
      const pointsImage = names
        .map((k) => handles[k])
        .filter((h) => h && h.x !== undefined && h.y !== undefined)
        .map((h) => [Number(h.x), Number(h.y)]);
      const { label, labelSource } = ohifLabel({ findingSites: state.findingSites, finding: state.finding, annotation: {} });
      out.push({
        toolType,
        label,
        labelSource,
        trackingIdentifier: null,
        trackingUniqueIdentifier: null,
        rehydratable: null,
        referencedSOPInstanceUID: state.sopInstanceUid ?? null,
        frameNumber: number(state.frameIndex),
        referencedImageId: null,
        points: null,
        points_image: pointsImage,
        length: number(state.length ?? state.longestDiameter),
        width: number(state.shortestDiameter),
        unit: null,
        finding: plainCode(state.finding),
        findingSites: (state.findingSites ?? []).map(plainCode),
      });
    }
  }
  console.error(`ohif_read: ${out.length} of ${tracking.length} measurement groups recovered (legacy dcmjs Cornerstone adapter)`);
  return out;
}

async function main(argv) {
  const print = reserveStdout();
  const legacy = argv.includes('--legacy');
  const [srPath, ...imagePaths] = argv.filter((a) => a !== '--legacy');
  if (!srPath) {
    console.error('usage: ohif_read.mjs [--legacy] SR_FILE IMAGE_FILE...');
    process.exit(2);
  }
  const libraries = await loadLibraries();
  const out = legacy ? readLegacy(libraries, srPath) : readCornerstone3D(libraries, srPath, imagePaths);
  print(JSON.stringify(out) + '\n');
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((error) => {
    console.error(error?.stack ?? String(error));
    process.exit(1);
  });
}
