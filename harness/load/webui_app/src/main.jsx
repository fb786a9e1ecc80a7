// Locust's own web UI (the locust-ui library, as Locust documents for custom tabs) with one more tab: the fault
// controls. The other extra tabs (CMG traffic, lifecycle outcomes, verdicts, fault windows) stay Locust's table tabs,
// declared by the plugin in template_args and filled from each /stats/requests poll.
import { createRoot } from "react-dom/client";
import LocustUi from "locust-ui";

import FaultTab, { FAULT_TAB } from "./FaultTab.jsx";

const args = window.templateArgs || {};
// Passing extendedTabs to LocustUi replaces the ones from template_args, so they are passed on here with ours added;
// the same for the tables and report links it would otherwise clear.
const extendedTabs = [
  ...(args.extended_tabs || args.extendedTabs || []),
  { title: "Fault controls", key: FAULT_TAB, component: FaultTab },
];

createRoot(document.getElementById("root")).render(
  <LocustUi
    extendedTabs={extendedTabs}
    extendedTables={args.extended_tables || args.extendedTables || []}
    extendedReports={args.extended_csv_files || args.extendedCsvFiles || []}
  />,
);
