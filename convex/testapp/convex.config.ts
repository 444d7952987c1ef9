// The app's component configuration, as `npx convex dev` reads it. The local
// backend does not run this file: it installs every folder holding a
// `convex.config.ts` (here components/ratelimiter) under its name, as this
// `app.use` does.
import { defineApp } from "convex/server";
import ratelimiter from "./components/ratelimiter/convex.config";

const app = defineApp();
app.use(ratelimiter);

export default app;
