// GCJ-02 (the datum China's published maps are required to use) and WGS-84 (what GPS units report). Tiles in
// GCJ-02 put every WGS-84 position some hundreds of metres off; a map with such tiles shows positions shifted
// to GCJ-02 and shifts a click back to WGS-84 before it becomes a fence or a target. The forward conversion is
// the well-known published one (Krasovsky 1940 ellipsoid); the reverse is solved by iteration to well under
// a millimetre. Outside China nothing is shifted, as GCJ-02 is defined there only.
const A = 6378245.0;
const EE = 0.00669342162296594323;

export function outOfChina(lat, lon) {
  return lon < 72.004 || lon > 137.8347 || lat < 0.8293 || lat > 55.8271;
}

function transformLat(x, y) {
  let r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * Math.sqrt(Math.abs(x));
  r += ((20.0 * Math.sin(6.0 * x * Math.PI) + 20.0 * Math.sin(2.0 * x * Math.PI)) * 2.0) / 3.0;
  r += ((20.0 * Math.sin(y * Math.PI) + 40.0 * Math.sin((y / 3.0) * Math.PI)) * 2.0) / 3.0;
  r += ((160.0 * Math.sin((y / 12.0) * Math.PI) + 320 * Math.sin((y * Math.PI) / 30.0)) * 2.0) / 3.0;
  return r;
}

function transformLon(x, y) {
  let r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * Math.sqrt(Math.abs(x));
  r += ((20.0 * Math.sin(6.0 * x * Math.PI) + 20.0 * Math.sin(2.0 * x * Math.PI)) * 2.0) / 3.0;
  r += ((20.0 * Math.sin(x * Math.PI) + 40.0 * Math.sin((x / 3.0) * Math.PI)) * 2.0) / 3.0;
  r += ((150.0 * Math.sin((x / 12.0) * Math.PI) + 300.0 * Math.sin((x / 30.0) * Math.PI)) * 2.0) / 3.0;
  return r;
}

/** WGS-84 [lat, lon] to GCJ-02 [lat, lon]. */
export function wgsToGcj(lat, lon) {
  if (outOfChina(lat, lon)) return [lat, lon];
  let dLat = transformLat(lon - 105.0, lat - 35.0);
  let dLon = transformLon(lon - 105.0, lat - 35.0);
  const radLat = (lat / 180.0) * Math.PI;
  let magic = Math.sin(radLat);
  magic = 1 - EE * magic * magic;
  const sqrtMagic = Math.sqrt(magic);
  dLat = (dLat * 180.0) / (((A * (1 - EE)) / (magic * sqrtMagic)) * Math.PI);
  dLon = (dLon * 180.0) / ((A / sqrtMagic) * Math.cos(radLat) * Math.PI);
  return [lat + dLat, lon + dLon];
}

/** GCJ-02 [lat, lon] back to WGS-84 [lat, lon], by fixed-point iteration of wgsToGcj. */
export function gcjToWgs(lat, lon) {
  if (outOfChina(lat, lon)) return [lat, lon];
  let [wLat, wLon] = [lat, lon];
  for (let i = 0; i < 30; i += 1) {
    const [gLat, gLon] = wgsToGcj(wLat, wLon);
    const [eLat, eLon] = [gLat - lat, gLon - lon];
    wLat -= eLat;
    wLon -= eLon;
    if (Math.abs(eLat) < 1e-10 && Math.abs(eLon) < 1e-10) break;
  }
  return [wLat, wLon];
}

/** The pair of conversions for a map whose tiles are in `datum` ("wgs84" or "gcj02"). */
export function datumFor(datum) {
  if (datum === "gcj02") return { toMap: wgsToGcj, fromMap: gcjToWgs };
  return { toMap: (lat, lon) => [lat, lon], fromMap: (lat, lon) => [lat, lon] };
}
