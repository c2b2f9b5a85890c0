import { createRoot } from "react-dom/client";
import { scheduleRefresh } from "./net/auth";
import { App } from "./ui/App";

scheduleRefresh();
createRoot(document.getElementById("root")!).render(<App />);
