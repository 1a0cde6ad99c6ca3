// --input-format, as every command that reads a dump offers it: the
// formats openSource() accepts, so the option and the readers agree.
import { Option } from "commander";
import { INPUT_FORMATS } from "../sources/open.js";

export function inputFormatOption(): Option {
  return new Option("--input-format <fmt>", "input format instead of sniffing it").choices(INPUT_FORMATS);
}
