// Reads the JUnit XML that `bun test --reporter=junit` writes and prints "N passed, N failed" (skips counted apart).
// Exits 1 when the report is missing, counts no test at all, or counts a failure.
const path = process.argv[2] ?? ".tmp/junit.xml";
const file = Bun.file(path);
if (!(await file.exists())) {
  console.log("0 passed, 1 failed");
  console.error(`junit-summary: no report at ${path}`);
  process.exit(1);
}
const xml = await file.text();
// Count <testcase> elements and the ones holding a <failure> or <error>; nested suites make the root totals the sum.
const cases = xml.match(/<testcase\b[\s\S]*?(?:\/>|<\/testcase>)/g) ?? [];
let failed = 0;
let skipped = 0;
for (const testCase of cases) {
  if (/<(failure|error)\b/.test(testCase)) failed++;
  else if (/<skipped\b/.test(testCase)) skipped++;
}
const passed = cases.length - failed - skipped;
console.log(`${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ""}`);
process.exit(failed > 0 || cases.length === 0 ? 1 : 0);
