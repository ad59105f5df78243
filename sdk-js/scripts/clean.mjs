// Removes dist/ before a build, so no file of an older build is left behind.
import { rmSync } from "node:fs";

rmSync(new URL("../dist", import.meta.url), { recursive: true, force: true });
